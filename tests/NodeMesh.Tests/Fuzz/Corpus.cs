namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// The committed seed inputs under Fuzz/corpus/ (copied next to the test assembly): every file is replayed on
/// every run, and the mutating properties start from them.
/// </summary>
internal static class Corpus
{
    public static IReadOnlyList<(string Name, byte[] Bytes)> Frames { get; } = Load("frames");

    public static IReadOnlyList<(string Name, byte[] Bytes)> FlowHeaders { get; } = Load("flowheader");

    public static IReadOnlyList<(string Name, byte[] Bytes)> Configs { get; } = Load("config");

    public static TheoryData<string> Names(string kind)
    {
        var names = new TheoryData<string>();
        foreach ((string name, _) in Load(kind))
        {
            names.Add(name);
        }

        return names;
    }

    public static byte[] Read(string kind, string name) => File.ReadAllBytes(Path.Combine(Directory(kind), name));

    private static IReadOnlyList<(string, byte[])> Load(string kind)
    {
        string[] files = System.IO.Directory.GetFiles(Directory(kind));
        Array.Sort(files, StringComparer.Ordinal);
        return files.Length > 0
            ? files.Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))).ToArray()
            : throw new InvalidOperationException($"the fuzz corpus '{kind}' is empty or missing in {Directory(kind)}");
    }

    private static string Directory(string kind) => Path.Combine(AppContext.BaseDirectory, "Fuzz", "corpus", kind);
}
