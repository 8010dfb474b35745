namespace NodeMesh.Tests.Netns;

/// <summary>Where the integration tests find the binary under test and the topology script.</summary>
internal static class TestPaths
{
    private static readonly Lazy<string> Root = new(FindRepoRoot);
    private static readonly Lazy<string> Binary = new(FindBinary);

    /// <summary>The directory that holds NodeMesh.sln.</summary>
    public static string RepoRoot => Root.Value;

    /// <summary>The AOT agent binary: $NODEMESH_BIN (set by ./build.sh test), else artifacts/bin/nodemesh.</summary>
    public static string NodeMesh => Binary.Value;

    /// <summary>The AOT CNI plug-in, beside the agent binary.</summary>
    public static string Shim => Path.Combine(Path.GetDirectoryName(NodeMesh)!, "nodemesh-cni");

    public static string TopologyScript => Path.Combine(RepoRoot, "tests", "netns", "topology.sh");

    /// <summary>A helper script of the gateway tests (tests/NodeMesh.Tests/Gateway/scripts).</summary>
    public static string GatewayScript(string name) => Path.Combine(RepoRoot, "tests", "NodeMesh.Tests", "Gateway", "scripts", name);

    private static string FindRepoRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "NodeMesh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"NodeMesh.sln not found above {AppContext.BaseDirectory}; run the tests from the repository");
    }

    private static string FindBinary()
    {
        string? fromEnvironment = Environment.GetEnvironmentVariable("NODEMESH_BIN");
        string path = string.IsNullOrEmpty(fromEnvironment)
            ? Path.Combine(RepoRoot, "artifacts", "bin", "nodemesh")
            : Path.GetFullPath(fromEnvironment);
        if (!File.Exists(path))
        {
            throw new InvalidOperationException(
                $"the nodemesh binary is not at {path}; build it with './build.sh publish' (or set NODEMESH_BIN)");
        }

        return path;
    }
}
