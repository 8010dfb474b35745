using System.Text.Json;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Every <c>nodemesh</c> command that cannot do its job says why in one line on stderr and exits with the code
/// documented in <c>--help</c> (1 failure, 2 usage or configuration, 3 not permitted): bad arguments, missing or
/// unwritable files and directories, a non-root user, no agent, and requests the agent must refuse. Never a
/// stack trace, and the agent always answers.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class CommandErrorTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nodemesh-it", "cli-" + Guid.NewGuid().ToString("N")[..8]);

    public CommandErrorTests(ITestOutputHelper output)
    {
        _output = output;
        Directory.CreateDirectory(_dir);
        File.SetUnixFileMode(_dir, (UnixFileMode)0b111_101_101);
        using (CertificateAuthority.Create(Path.Combine(_dir, "ca"), "cluster.local", TimeSpan.FromDays(1)))
        {
        }

        _ = JoinTokens.Open(Path.Combine(_dir, "ca"));
        File.WriteAllText(Path.Combine(_dir, "file"), "not a directory\n");
        // A directory the unprivileged user may write, so its commands get as far as the files it may not read.
        string own = Path.Combine(_dir, "nobody");
        Directory.CreateDirectory(own);
        File.SetUnixFileMode(own, (UnixFileMode)0b111_111_111);
        WriteConfig("run-as-nobody.json", stateDir: Path.Combine(own, "state"), apiSocket: Path.Combine(own, "agent.sock"));
        WriteConfig("state-under-a-file.json", stateDir: Path.Combine(_dir, "file", "state"), apiSocket: Path.Combine(_dir, "agent.sock"));
    }

    public static TheoryData<string, bool, string, int, string> FailingCommands() => new()
    {
        // case, run as nobody, arguments ({dir} is the test's directory), exit code, what stderr must say
        { "unknown command", false, "frobnicate", 2, "unknown command 'frobnicate'" },
        { "option without its value", false, "ca init --dir", 2, "--dir needs a value" },
        { "CA lifetime out of range", false, "ca init --dir {dir}/new --days 99999999", 2, "--days: 99999999 is not between" },
        { "bad trust domain", false, "ca init --dir {dir}/new --trust-domain Not.A.Domain", 2, "--trust-domain" },
        { "a CA exists already", false, "ca init --dir {dir}/ca", 1, "a CA already exists in" },
        { "CA directory under a file", false, "ca init --dir {dir}/file/ca", 1, "cannot create the CA in" },
        { "ca init without permission", true, "ca init --dir {dir}/ca-of-nobody", 3, "cannot create the CA in" },
        { "token create without permission", true, "ca token create --dir {dir}/ca --node node2", 3, "cannot read the join-token secret" },
        { "token create without a CA", false, "ca token create --dir {dir}/none --node node2", 2, "no CA in" },
        { "token with a bad ttl", false, "ca token create --dir {dir}/ca --node node2 --ttl 5y", 2, "--ttl" },
        { "run without permission", true, "run --config {dir}/run-as-nobody.json", 3, "ca.dir: cannot load the CA" },
        { "run with a state directory that cannot exist", false, "run --config {dir}/state-under-a-file.json", 1, "stateDir: cannot write to" },
        { "check of a missing file", false, "check --config {dir}/missing.json", 2, "missing.json" },
        { "agent not running", false, "workload list --socket {dir}/none.sock", 1, "cannot reach the agent at" },
        { "socket path is a file", false, "status --socket {dir}/file", 1, "cannot reach the agent at" },
        { "socket path too long for a Unix socket", false, "status --socket /tmp/{long}", 2, "--socket: a Unix socket path has 1 to 107 bytes" },
    };

    [Theory]
    [MemberData(nameof(FailingCommands))]
    public async Task FailingCommand_SaysWhyInOneLine_WithItsExitCode(string name, bool asNobody, string arguments, int exitCode, string expected)
    {
        string[] args = arguments.Replace("{dir}", _dir, StringComparison.Ordinal).Replace("{long}", new string('x', 120), StringComparison.Ordinal).Split(' ');
        CommandResult result = asNobody
            ? await Command.RunAsync(TimeSpan.FromSeconds(30), "setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", TestPaths.NodeMesh, .. args])
            : await Command.RunAsync(TimeSpan.FromSeconds(30), TestPaths.NodeMesh, args);

        _output.WriteLine(result.ToString());
        Assert.True(result.ExitCode == exitCode && !result.TimedOut, $"{name}: expected exit code {exitCode}; {result}");
        Assert.True(result.Stderr.Contains(expected, StringComparison.Ordinal), $"{name}: stderr must say '{expected}'; {result}");
        AssertNoStackTrace(name, result);
        if (exitCode == 3)
        {
            Assert.True(result.Stderr.Contains("run as root", StringComparison.Ordinal), $"{name}: a permission failure must say what it needs; {result}");
        }
    }

    [Fact]
    public async Task Run_AsNonRoot_WithAWorkload_SaysSetnsNeedsRootOrCapabilities()
    {
        // Everything else readable by the user, so the first thing it may not do is enter the workload's namespace.
        string own = Path.Combine(_dir, "nobody");
        CommandResult init = await Command.RunAsync(TimeSpan.FromSeconds(30), "setpriv",
            "--reuid=65534", "--regid=65534", "--clear-groups", TestPaths.NodeMesh, "ca", "init", "--dir", Path.Combine(own, "ca"));
        Assert.True(init.Succeeded, init.ToString());
        string netns = "nmcli-" + Guid.NewGuid().ToString("N")[..8];
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "ip", "netns", "add", netns);
        try
        {
            string config = WriteConfig("setns.json", stateDir: Path.Combine(own, "state"), apiSocket: Path.Combine(own, "agent.sock"), caDir: Path.Combine(own, "ca"),
                workload: new WorkloadConfig { Name = "a", Ip = "10.240.77.2", Identity = "spiffe://cluster.local/ns/test/sa/a", Netns = $"/var/run/netns/{netns}" });
            CommandResult run = await Command.RunAsync(TimeSpan.FromSeconds(30), "setpriv",
                "--reuid=65534", "--regid=65534", "--clear-groups", TestPaths.NodeMesh, "run", "--config", config);

            _output.WriteLine(run.ToString());
            Assert.True(run.ExitCode == 3, $"exit code 3 expected; {run}");
            Assert.True(run.Stderr.Contains("setns", StringComparison.Ordinal) && run.Stderr.Contains("needs root / CAP_NET_ADMIN, CAP_SYS_ADMIN", StringComparison.Ordinal),
                $"the failure must say what setns needs; {run}");
            AssertNoStackTrace("setns as nobody", run);
        }
        finally
        {
            await Command.RunAsync(TimeSpan.FromSeconds(10), "ip", "netns", "delete", netns);
        }
    }

    [Fact]
    public async Task AgentRefusals_AreRepliesWithTheirReason_AndTheAgentKeepsServing()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, _output);
        Pod captured = mesh.Pod(1, 1), other = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [captured]);

        // A second workload into a namespace that is already captured.
        CommandResult again = await agent.CliAsync("workload", "add", "--name", other.Name, "--ip", other.Ip.ToString(), "--identity", other.Identity,
            "--netns", captured.NetnsPath);
        Assert.True(again.ExitCode == 1, agent.Explain($"a second workload in {captured.Name}'s namespace must be refused; {again}"));
        Assert.True(again.Stderr.Contains("netns:", StringComparison.Ordinal) && again.Stderr.Contains("already captured", StringComparison.Ordinal),
            agent.Explain($"the refusal must name the namespace; {again}"));
        AssertNoStackTrace("second workload in a captured namespace", again);

        // Removing what is not there.
        CommandResult remove = await agent.CliAsync("workload", "remove", "--name", "nothing-here");
        Assert.True(remove.ExitCode == 1 && remove.Stderr.Contains("no local workload named 'nothing-here'", StringComparison.Ordinal), agent.Explain(remove.ToString()));
        AssertNoStackTrace("remove of an unknown workload", remove);

        // The API socket is root's: another user is told so, with exit code 3.
        CommandResult stranger = await Command.RunAsync(TimeSpan.FromSeconds(20), "setpriv",
            "--reuid=65534", "--regid=65534", "--clear-groups", TestPaths.NodeMesh, "workload", "list", "--socket", agent.SocketPath);
        Assert.True(stranger.ExitCode == 3 && stranger.Stderr.Contains("not permitted", StringComparison.Ordinal), agent.Explain(stranger.ToString()));
        AssertNoStackTrace("API as another user", stranger);

        Assert.True(agent.IsRunning, agent.Explain("the agent died"));
        Assert.Equal(captured.Name, Assert.Single(await agent.WorkloadListAsync()).Name);
        CommandResult add = await agent.WorkloadAddAsync(other);
        Assert.True(add.Succeeded, agent.Explain($"the right registration after the refusals: {add}"));
    }

    private static void AssertNoStackTrace(string name, CommandResult result)
    {
        string all = result.Stdout + result.Stderr;
        Assert.False(all.Contains("   at ", StringComparison.Ordinal) || all.Contains("Unhandled exception", StringComparison.Ordinal),
            $"{name}: a stack trace was printed; {result}");
        Assert.True(result.Stderr.Split('\n').Any(line => line.StartsWith("nodemesh: ", StringComparison.Ordinal)), $"{name}: stderr must say 'nodemesh: ' and why; {result}");
    }

    private string WriteConfig(string name, string stateDir, string apiSocket, string? caDir = null, WorkloadConfig? workload = null)
    {
        var config = new AgentConfig
        {
            Node = new NodeConfig { Name = "node1", Address = "127.0.0.1" },
            Ca = new CaConfig { Dir = caDir ?? Path.Combine(_dir, "ca") },
            StateDir = stateDir,
            ApiSocket = apiSocket,
            Ports = new PortsConfig { Tunnel = 25908 },
            Workloads = workload is null ? [] : [workload],
        };
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig));
        File.SetUnixFileMode(path, (UnixFileMode)0b110_100_100);
        return path;
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
