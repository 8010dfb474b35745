using NodeMesh.Cli;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Unit;

/// <summary>
/// packaging/man/nodemesh.1 renders without a warning and documents every command and option the CLI knows (the
/// list comes from the command table, so a new command without a man entry fails here), the exit codes, the
/// files and the environment.
/// </summary>
public class ManPageTests
{
    private static string ManPage => Path.Combine(TestPaths.RepoRoot, "packaging", "man", "nodemesh.1");

    /// <summary>The page as a reader sees it: no hyphenation or justification to get in the way of a search.</summary>
    private static async Task<string> RenderedAsync()
    {
        CommandResult result = await Command.RunAsync("groff", "-man", "-Tutf8", "-ww", "-rHY=0", "-dAD=l", "-rLL=200n", "-P-c", "-P-b", "-P-u", ManPage);
        Assert.True(result.Succeeded, result.ToString());
        Assert.True(result.Stderr.Length == 0, $"groff warned: {result.Stderr}");
        return result.Stdout;
    }

    [Fact]
    public async Task RendersWithoutWarnings_ThroughMan()
    {
        CommandResult man = await Command.RunAsync("env", "MANWIDTH=100", "LC_ALL=C.UTF-8", "man", "--warnings", "-l", ManPage);
        Assert.True(man.Succeeded && man.Stderr.Length == 0, man.ToString());
        Assert.Contains("NODEMESH(1)", man.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HasEveryCommandAndOption_TheExitCodesFilesAndEnvironment()
    {
        string page = (await RenderedAsync()).Replace('\u2010', '-').Replace('\u2212', '-');
        string[] lines = page.Split('\n');
        foreach (CommandSpec command in CommandTable.All)
        {
            // A subsection headed by the command.
            Assert.True(lines.Any(l => l.StartsWith($"   nodemesh {command.Path}", StringComparison.Ordinal)), $"no subsection for 'nodemesh {command.Path}'");
            foreach (OptionSpec option in command.Options)
            {
                Assert.True(page.Contains("--" + option.Name, StringComparison.Ordinal), $"'--{option.Name}' of 'nodemesh {command.Path}' is not in the man page");
            }
        }

        foreach (string section in new[] { "EXIT STATUS", "ENVIRONMENT", "FILES", "OUTPUT FORMATS", "AGENT SOCKET" })
        {
            Assert.Contains(lines, l => l == section);
        }

        foreach (string word in new[] { "NODEMESH_SOCKET", "/run/nodemesh/agent.sock", "/etc/nodemesh/config.json", "-o, --output", "table|wide|json|yaml" })
        {
            Assert.Contains(word, page, StringComparison.Ordinal);
        }
    }
}
