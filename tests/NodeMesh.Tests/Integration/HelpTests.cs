using NodeMesh.Cli;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Integration;

/// <summary>The real binary's help: every command's <c>--help</c>, <c>-h</c> and <c>help COMMAND</c> print its usage and exit 0.</summary>
public sealed class HelpTests
{
    public static TheoryData<string> AllCommands() => [.. CommandTable.All.Select(c => c.Path)];

    [Theory]
    [MemberData(nameof(AllCommands))]
    public async Task EveryCommand_HasHelp_ThreeWays(string path)
    {
        string[] words = path.Split(' ');
        foreach (string[] args in new string[][] { [.. words, "--help"], [.. words, "-h"], ["help", .. words] })
        {
            CommandResult result = await Command.RunAsync(TestPaths.NodeMesh, args);
            Assert.True(result.Succeeded && result.Stderr.Length == 0, result.ToString());
            Assert.Contains($"Usage: nodemesh {path}", result.Stdout, StringComparison.Ordinal);
            Assert.Contains("Example:", result.Stdout, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("workload", "add, remove, list")]
    [InlineData("ca", "init, token create")]
    [InlineData("ca token", "create")]
    public async Task Groups_ListTheirCommands_AndWithoutOneAreAUsageError(string group, string commands)
    {
        CommandResult help = await Command.RunAsync(TestPaths.NodeMesh, [.. group.Split(' '), "--help"]);
        Assert.True(help.Succeeded && help.Stdout.Contains($"Usage: nodemesh {group} COMMAND", StringComparison.Ordinal), help.ToString());
        CommandResult bare = await Command.RunAsync(TestPaths.NodeMesh, group.Split(' '));
        Assert.True(bare.ExitCode == 2 && bare.Stderr.Contains($"'nodemesh {group}' needs a command: {commands}", StringComparison.Ordinal), bare.ToString());
    }

    [Fact]
    public async Task UnknownOption_NamesTheCommand_AndPointsAtItsHelp()
    {
        CommandResult result = await Command.RunAsync(TestPaths.NodeMesh, "flows", "--folow");
        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Equal("nodemesh: unknown option '--folow' for 'nodemesh flows'; see 'nodemesh flows --help'\n", result.Stderr);
    }
}
