using System.Text.RegularExpressions;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The .deb that `./build.sh package` makes, built from the binaries under test: lintian finds no error, it installs
/// on this machine, the installed agent answers `version` and accepts its default configuration, the unit verifies,
/// and a purge leaves nothing behind. This installs into the real filesystem, so it purges in a finally, and is
/// skipped (saying why) when anything it would install is there already.
/// </summary>
public sealed partial class PackageTests(ITestOutputHelper output)
{
    private const string Package = "nodemesh";
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromSeconds(120);
    private static readonly string UnitSource = Path.Combine(TestPaths.RepoRoot, "packaging", "nodemesh.service");

    [PackageFact]
    public async Task Deb_Installs_Runs_AndPurgesWithoutLeftovers()
    {
        string workDir = Directory.CreateTempSubdirectory("nodemesh-deb-").FullName;
        try
        {
            string deb = await BuildAsync(workDir);
            Assert.True(File.Exists("/usr/bin/lintian"), "lintian is missing: run ./build.sh deps");
            CommandResult lintian = await Command.RunAsync(TimeSpan.FromSeconds(120), "lintian", "--no-tag-display-limit", deb);
            output.WriteLine(lintian.ToString());
            Assert.False(lintian.TimedOut, $"lintian: {lintian}");
            Assert.DoesNotMatch(LintianError(), lintian.Stdout);

            List<string> files = PackagePaths((await Command.RunCheckedAsync(TimeSpan.FromSeconds(30), "dpkg-deb", "--contents", deb)).Stdout);
            var existedBefore = files.Where(p => Path.Exists(p)).ToHashSet(StringComparer.Ordinal);
            Assert.True(files.Count > 0 && existedBefore.All(Directory.Exists),
                $"the package would overwrite files that exist: {string.Join(", ", existedBefore.Where(p => !Directory.Exists(p)))}");
            try
            {
                await Command.RunCheckedAsync(TimeSpan.FromSeconds(120), "dpkg", "--install", deb);
                await AssertInstalledAsync(deb);
                // What the agent would leave at run time (its CA, state): a purge removes that too.
                Directory.CreateDirectory("/var/lib/nodemesh/ca");
                await File.WriteAllTextAsync("/var/lib/nodemesh/ca/ca.crt", "left by the agent");
            }
            finally
            {
                CommandResult purge = await Command.RunAsync(TimeSpan.FromSeconds(120), "dpkg", "--purge", Package);
                output.WriteLine(purge.ToString());
            }

            CommandResult status = await Command.RunAsync("dpkg-query", "--show", "--showformat=${db:Status-Status}", Package);
            Assert.True(!status.Succeeded || status.Stdout.Trim() is "not-installed" or "", $"after the purge dpkg still knows the package: {status}");
            List<string> left = files.Where(p => !existedBefore.Contains(p) && Path.Exists(p)).ToList();
            Assert.True(left.Count == 0, $"left after the purge: {string.Join(", ", left)}");
            Assert.False(Directory.Exists("/var/lib/nodemesh"), "/var/lib/nodemesh was left after the purge");
            Assert.False(Directory.Exists("/etc/nodemesh"), "/etc/nodemesh was left after the purge");
        }
        finally
        {
            Directory.Delete(workDir, recursive: true);
        }
    }

    /// <summary>The unit in the repository (ExecStart pointed at the binary under test): verified clean, and hardened.</summary>
    [Fact]
    public async Task Unit_VerifiesClean_AndIsHardened()
    {
        string dir = Directory.CreateTempSubdirectory("nodemesh-unit-").FullName;
        try
        {
            string unit = await File.ReadAllTextAsync(UnitSource);
            string copy = Path.Combine(dir, "nodemesh.service");
            await File.WriteAllTextAsync(copy, unit.Replace("/usr/bin/nodemesh", TestPaths.NodeMesh, StringComparison.Ordinal));
            // --man=no: the man page is installed by the package (the installed unit is verified with it in the test above).
            CommandResult verify = await Command.RunAsync(TimeSpan.FromSeconds(60), "systemd-analyze", "verify", "--man=no", copy);
            Assert.True(verify.Succeeded && verify.Stderr.Trim().Length == 0 && verify.Stdout.Trim().Length == 0, $"systemd-analyze verify: {verify}");

            Dictionary<string, string> service = Settings(unit);
            Assert.Equal("notify", service["Type"]);
            Assert.Equal("strict", service["ProtectSystem"]);
            Assert.Equal("yes", service["NoNewPrivileges"]);
            Assert.Equal("yes", service["ProtectHome"]);
            Assert.Equal("yes", service["PrivateTmp"]);
            Assert.Equal("always", service["Restart"]);
            Assert.Equal("nodemesh", service["StateDirectory"]);
            Assert.Equal("nodemesh", service["RuntimeDirectory"]);
            Assert.Matches(@"^\d+s$", service["WatchdogSec"]);
            string[] needed = ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"];
            Assert.Equal(needed, service["CapabilityBoundingSet"].Split(' ').Order(StringComparer.Ordinal));
            Assert.Equal(needed, service["AmbientCapabilities"].Split(' ').Order(StringComparer.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private async Task<string> BuildAsync(string outDir)
    {
        CommandResult build = await Command.RunAsync(BuildTimeout, Path.Combine(TestPaths.RepoRoot, "build.sh"), "package",
            "--bin", Path.GetDirectoryName(TestPaths.NodeMesh)!, "--out", outDir);
        output.WriteLine(build.ToString());
        Assert.True(build.Succeeded, $"./build.sh package: {build}");
        string deb = Assert.Single(Directory.GetFiles(outDir, "nodemesh_*_amd64.deb"));
        Assert.Equal(deb, build.Stdout.Trim());
        return deb;
    }

    private static async Task AssertInstalledAsync(string deb)
    {
        string version = DebVersion().Match(Path.GetFileName(deb)).Groups["upstream"].Value;
        CommandResult printed = await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "/usr/bin/nodemesh", "version");
        Assert.StartsWith($"nodemesh {version}", printed.Stdout, StringComparison.Ordinal);
        CommandResult check = await Command.RunAsync(TimeSpan.FromSeconds(10), "/usr/bin/nodemesh", "check", "--config", "/etc/nodemesh/config.json");
        Assert.True(check.Succeeded, $"the default configuration must be valid: {check}");
        Assert.True(File.Exists("/usr/bin/nodemesh-cni"), "/usr/bin/nodemesh-cni is missing");
        // Found where Debian's runtimes look for CNI plug-ins, and answering there as a plug-in.
        Assert.Equal("../../bin/nodemesh-cni", new FileInfo("/usr/lib/cni/nodemesh-cni").LinkTarget);
        var cni = new System.Diagnostics.ProcessStartInfo("/usr/lib/cni/nodemesh-cni") { RedirectStandardOutput = true, RedirectStandardInput = true };
        cni.Environment["CNI_COMMAND"] = "VERSION";
        using (var plugin = System.Diagnostics.Process.Start(cni)!)
        {
            plugin.StandardInput.Close();
            string answer = await plugin.StandardOutput.ReadToEndAsync();
            await plugin.WaitForExitAsync();
            Assert.True(plugin.ExitCode == 0 && answer.Contains("\"supportedVersions\"", StringComparison.Ordinal), $"nodemesh-cni VERSION: {plugin.ExitCode} {answer}");
        }

        Assert.True(File.Exists("/usr/share/man/man1/nodemesh.1.gz"), "the man page is missing");
        Assert.True(File.Exists("/usr/share/doc/nodemesh/copyright") && File.Exists("/usr/share/doc/nodemesh/changelog.Debian.gz"), "copyright or changelog missing");
        Assert.True(Directory.Exists("/var/lib/nodemesh"), "the state directory is missing");
        CommandResult conffiles = await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "dpkg-query", "--show", "--showformat=${Conffiles}", Package);
        Assert.Contains("/etc/nodemesh/config.json", conffiles.Stdout, StringComparison.Ordinal);
        // Installed, with its ExecStart binary and its man page (Documentation=man:nodemesh(1)) in place.
        CommandResult verify = await Command.RunAsync(TimeSpan.FromSeconds(60), "systemd-analyze", "verify", "/lib/systemd/system/nodemesh.service");
        Assert.True(verify.Succeeded && verify.Stderr.Trim().Length == 0, $"systemd-analyze verify of the installed unit: {verify}");
    }

    /// <summary>The absolute paths in a `dpkg-deb --contents` listing, deepest first.</summary>
    private static List<string> PackagePaths(string listing) =>
        listing.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line[(line.IndexOf("./", StringComparison.Ordinal) + 1)..].TrimEnd('/'))
            .Where(p => p.Length > 0)
            .OrderByDescending(p => p.Length)
            .ToList();

    /// <summary>Key=value lines of a unit file (the last of a key wins, as in systemd for these keys).</summary>
    private static Dictionary<string, string> Settings(string unit)
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in unit.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && l[0] is not ('#' or '[')))
        {
            int eq = line.IndexOf('=', StringComparison.Ordinal);
            settings[line[..eq]] = line[(eq + 1)..];
        }

        return settings;
    }

    [GeneratedRegex(@"^E: ", RegexOptions.Multiline)]
    private static partial Regex LintianError();

    [GeneratedRegex(@"^nodemesh_(?<upstream>[^-_]+)-\d+_amd64\.deb$")]
    private static partial Regex DebVersion();

    /// <summary>
    /// Skipped when a nodemesh package is installed, or any file the package holds exists already: the test must
    /// leave this machine as it found it, and would otherwise overwrite or purge someone else's installation.
    /// </summary>
    private sealed class PackageFactAttribute : FactAttribute
    {
        private static readonly string[] Owned =
            ["/usr/bin/nodemesh", "/usr/bin/nodemesh-cni", "/usr/lib/cni/nodemesh-cni", "/lib/systemd/system/nodemesh.service", "/etc/nodemesh", "/var/lib/nodemesh", "/usr/share/doc/nodemesh"];

        public PackageFactAttribute()
        {
            if (!Environment.IsPrivilegedProcess)
            {
                return; // runs, and fails at dpkg: a test that needs root fails without it
            }

            CommandResult installed = Command.RunAsync(TimeSpan.FromSeconds(10), "dpkg-query", "--show", "--showformat=${db:Status-Status}", Package)
                .GetAwaiter().GetResult();
            if (installed.Succeeded && installed.Stdout.Trim() is { Length: > 0 } state && state != "not-installed")
            {
                Skip = $"a '{Package}' package is already installed here ({state}); this test installs and purges its own, so it leaves that one alone (dpkg --purge {Package} to run it)";
            }
            else if (Owned.FirstOrDefault(Path.Exists) is { } present)
            {
                Skip = $"{present} exists already; this test would overwrite or remove it (remove it to run the test)";
            }
        }
    }
}
