using NodeMesh.Cli;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// <c>nodemesh completion</c>: bash sources the script and its completion function offers every command,
/// sub-command, option and -o format the command table has (the fish and zsh scripts are written from the same table).
/// </summary>
public sealed class CompletionTests
{
    /// <summary>What the completion function offers for the words typed so far (the last one being completed).</summary>
    private static async Task<string[]> CompleteAsync(params string[] typed)
    {
        string words = string.Join(' ', typed.Select(w => $"'{w}'"));
        CommandResult result = await Command.RunAsync("bash", "-c",
            $"source <('{TestPaths.NodeMesh}' completion bash) && COMP_WORDS=(nodemesh {words}) && COMP_CWORD={typed.Length} && _nodemesh && printf '%s\\n' \"${{COMPREPLY[@]}}\"");
        Assert.True(result.Succeeded && result.Stderr.Length == 0, result.ToString());
        return result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public async Task Bash_OffersCommandsSubCommandsOptionsAndFormats()
    {
        Assert.Equal(CommandTable.All.Select(c => c.Path.Split(' ')[0]).Distinct().Order(), (await CompleteAsync("")).Order());
        Assert.Equal(["add", "list", "remove"], (await CompleteAsync("workload", "")).Order());
        Assert.Equal(["init", "token"], (await CompleteAsync("ca", "")).Order());
        Assert.Equal(["create"], await CompleteAsync("ca", "token", ""));
        Assert.Equal(["status"], await CompleteAsync("st"));
        Assert.Equal(["--follow"], await CompleteAsync("flows", "--denied", "--fo"));
        Assert.Equal(["json", "table", "wide", "yaml"], (await CompleteAsync("status", "-o", "")).Order());
        Assert.Equal(["PERMISSIVE", "STRICT"], (await CompleteAsync("workload", "add", "--mode", "")).Order());
        Assert.Equal(["bash", "fish", "zsh"], (await CompleteAsync("completion", "")).Order());
        foreach (CommandSpec command in CommandTable.All.Where(c => c.Options.Length > 0))
        {
            string[] offered = await CompleteAsync([.. command.Path.Split(' '), "--"]);
            Assert.Equal(command.Options.Select(o => "--" + o.Name).Append("--help").Order(), offered.Order());
        }
    }

    [Fact]
    public async Task UnknownShell_IsAUsageError()
    {
        CommandResult result = await Command.RunAsync(TestPaths.NodeMesh, "completion", "tcsh");
        Assert.True(result.ExitCode == 2 && result.Stderr.Contains("no completion for 'tcsh': give one of bash, zsh, fish", StringComparison.Ordinal), result.ToString());
    }
}
