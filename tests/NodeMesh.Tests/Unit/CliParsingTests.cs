using NodeMesh.App;
using NodeMesh.Cli;

namespace NodeMesh.Tests.Unit;

/// <summary>The command table, option parsing against it, and the help it prints.</summary>
public class CliParsingTests
{
    private static CommandSpec Command(string path) => Assert.Single(CommandTable.All, c => c.Path == path);

    [Theory]
    [InlineData(new[] { "workload", "add", "--name", "x" }, "workload add", 2)]
    [InlineData(new[] { "ca", "token", "create" }, "ca token create", 3)]
    [InlineData(new[] { "flows", "-o", "wide" }, "flows", 1)]
    [InlineData(new[] { "status" }, "status", 1)]
    public void Find_TakesTheLongestCommand(string[] args, string path, int words)
    {
        (CommandSpec? command, int taken) = CommandTable.Find(args);
        Assert.Equal(path, command?.Path);
        Assert.Equal(words, taken);
    }

    [Fact]
    public void Find_NamesNoCommandForAGroupOrAnUnknownWord()
    {
        Assert.Null(CommandTable.Find(["workload"]).Command);
        Assert.Null(CommandTable.Find(["ca", "token"]).Command);
        Assert.Null(CommandTable.Find(["frobnicate"]).Command);
        Assert.Equal(["workload add", "workload remove", "workload list"], CommandTable.Under("workload").Select(c => c.Path));
        Assert.Equal(["ca token create"], CommandTable.Under("ca token").Select(c => c.Path));
    }

    [Theory]
    [InlineData("workload add", new[] { "--name", "x", "--help" })]
    [InlineData("ca token create", new[] { "-h" })]
    [InlineData("flows", new[] { "--nonsense", "-h" })]
    public void Help_AnywhereIsRequested_EvenWithOtherwiseBadArguments(string path, string[] args) =>
        Assert.True(Options.Parse(args, Command(path)).HelpRequested);

    [Fact]
    public void ShortOutput_ChoicesAndFlags_Parse()
    {
        Options options = Options.Parse(["-o", "yaml", "--workload", "api", "--denied", "-f"], Command("flows"));
        Assert.Equal("yaml", options.Get("output"));
        Assert.Equal("api", options.Get("workload"));
        Assert.True(options.Flag("denied") && options.Flag("follow"));
        Assert.Equal(OutputFormat.Yaml, Output.Format(options));
        Assert.Equal(OutputFormat.Json, Output.Format(Options.Parse(["--json"], Command("status"))));
        Assert.Equal(OutputFormat.Wide, Output.Format(Options.Parse(["--output=wide"], Command("workload list"))));
        Assert.Equal(OutputFormat.Table, Output.Format(Options.Parse([], Command("workload list"))));
    }

    [Theory]
    [InlineData("flows", new[] { "--bogus" }, "unknown option '--bogus' for 'nodemesh flows'; see 'nodemesh flows --help'")]
    [InlineData("workload add", new[] { "-x" }, "unknown option '-x' for 'nodemesh workload add'")]
    [InlineData("status", new[] { "-o", "xml" }, "--output: 'xml' is not one of table, wide, json, yaml")]
    [InlineData("doctor", new[] { "-o", "wide" }, "--output: 'wide' is not one of table, json")]
    [InlineData("status", new[] { "extra" }, "unexpected argument 'extra' for 'nodemesh status'")]
    [InlineData("flows", new[] { "--denied=yes" }, "--denied takes no value")]
    public void BadArguments_NameTheCommandAndWhatIsWrong(string path, string[] args, string expected)
    {
        UsageException ex = Assert.Throws<UsageException>(() => Options.Parse(args, Command(path)));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void JsonAndAnotherOutput_Disagree() =>
        Assert.Contains("--json and -o yaml disagree", Assert.Throws<UsageException>(() => Output.Format(Options.Parse(["--json", "-o", "yaml"], Command("status")))).Message, StringComparison.Ordinal);

    [Fact]
    public void Completion_TakesItsShellAsAnArgument() =>
        Assert.Equal(["bash"], Options.Parse(["bash"], Command("completion")).Arguments);

    public static TheoryData<string> AllCommands() => [.. CommandTable.All.Select(c => c.Path)];

    [Theory]
    [MemberData(nameof(AllCommands))]
    public void EveryCommandsHelp_HasUsageEveryOptionWithItsDefaultAndAnExample(string path)
    {
        CommandSpec command = Command(path);
        string help = HelpText.For(command);
        Assert.Contains($"Usage: nodemesh {path}", help, StringComparison.Ordinal);
        Assert.Contains("Example:\n  nodemesh ", help, StringComparison.Ordinal);
        Assert.Contains("-h, --help", help, StringComparison.Ordinal);
        foreach (OptionSpec option in command.Options)
        {
            string line = Assert.Single(help.Split('\n'), l => l.TrimStart().StartsWith(option.Usage + " ", StringComparison.Ordinal));
            if (option.Default is { } value && !option.Required)
            {
                Assert.Contains($"(default: {value})", line, StringComparison.Ordinal);
            }
        }

        Assert.StartsWith(path.Split(' ')[0], command.Example["nodemesh ".Length..], StringComparison.Ordinal);
        Assert.Contains(path, HelpText.Overview(), StringComparison.Ordinal);
    }

    [Fact]
    public void Overview_SaysWhereTheSocketComesFromAndTheExitCodes()
    {
        string overview = HelpText.Overview();
        Assert.Contains("$NODEMESH_SOCKET", overview, StringComparison.Ordinal);
        Assert.Contains("Exit codes: 0 success", overview, StringComparison.Ordinal);
    }

    [Fact]
    public void Socket_FlagThenEnvironmentThenConfigThenDefault()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nodemesh-cli-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            string config = Path.Combine(dir, "config.json");
            File.WriteAllText(config, """{ "node": { "name": "node1", "address": "10.0.0.1" }, "apiSocket": "/run/from-config.sock" }""");
            CommandSpec status = Command("status");
            Func<string, string?> none = _ => null;
            Func<string, string?> env = name => name == "NODEMESH_SOCKET" ? "/run/from-env.sock" : null;

            Assert.Equal("/run/flag.sock", AgentSocket.Resolve(Options.Parse(["--socket", "/run/flag.sock", "--config", config], status), env).Path);
            Assert.Equal("/run/from-env.sock", AgentSocket.Resolve(Options.Parse(["--config", config], status), env).Path);
            AgentSocket.Location fromConfig = AgentSocket.Resolve(Options.Parse(["--config", config], status), none);
            Assert.Equal(("/run/from-config.sock", $"apiSocket of {config}"), (fromConfig.Path, fromConfig.Origin));
            Assert.Equal(CommandTable.DefaultSocket, AgentSocket.Resolve(Options.Parse([], status), none).Path);
            Assert.Contains("$NODEMESH_SOCKET: a Unix socket path has 1 to 107 bytes",
                Assert.Throws<UsageException>(() => AgentSocket.Resolve(Options.Parse([], status), _ => "/" + new string('x', 120))).Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>The zsh and fish completion scripts cover the command table (bash is run for real in CompletionTests).</summary>
public class CompletionScriptTests
{
    [Fact]
    public void Zsh_IsTheBashScriptThroughBashcompinit()
    {
        string zsh = CompletionScripts.For("zsh");
        Assert.StartsWith("#compdef nodemesh\nautoload -U +X bashcompinit && bashcompinit\n", zsh, StringComparison.Ordinal);
        Assert.EndsWith(CompletionScripts.For("bash"), zsh, StringComparison.Ordinal);
    }

    [Fact]
    public void Fish_HasEveryCommandOnceAndEveryOption()
    {
        string[] lines = CompletionScripts.For("fish").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Length, lines.Distinct().Count());
        foreach (CommandSpec command in CommandTable.All)
        {
            Assert.Contains(lines, l => l.Contains($" -a {command.Path.Split(' ')[^1]} -d ", StringComparison.Ordinal));
            foreach (OptionSpec option in command.Options)
            {
                Assert.Contains(lines, l => l.Contains($"__fish_seen_subcommand_from {command.Path.Split(' ')[^1]}' -l {option.Name}", StringComparison.Ordinal));
            }
        }

        Assert.Contains(lines, l => l.Contains("-l output -s o -x -a 'table wide json yaml'", StringComparison.Ordinal));
    }
}
