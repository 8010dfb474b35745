using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using NodeMesh.Config;
using NodeMesh.Contracts;

namespace NodeMesh.Tests.Netns;

/// <summary>What goes into one node's agent configuration; the defaults make a full mesh.</summary>
internal sealed class AgentSetup
{
    /// <summary>Pods registered as this node's workloads in the config file (default: all of the node's pods).</summary>
    public IReadOnlyList<Pod>? LocalPods { get; set; }

    /// <summary>Pods of other nodes known as remote workloads (default: every pod of every other node).</summary>
    public IReadOnlyList<Pod>? RemotePods { get; set; }

    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The CA this agent issues its certificates from and trusts (default: the topology's one CA).</summary>
    public string? CaDir { get; set; }

    public TunnelConfig Tunnel { get; set; } = new();

    /// <summary>More local workloads, written as given (e.g. one whose namespace does not exist).</summary>
    public IList<WorkloadConfig> ExtraWorkloads { get; } = [];

    /// <summary>Authorization policies in the config file.</summary>
    public IList<Authz.PolicyConfig> Policies { get; } = [];

    /// <summary>Mode per local pod name ("STRICT" or "PERMISSIVE"; default PERMISSIVE).</summary>
    public IDictionary<string, string> Modes { get; } = new Dictionary<string, string>();

    /// <summary>Last word on the configuration before it is written (certificate sources, CA role, …).</summary>
    public Action<AgentConfig>? Customize { get; set; }

    /// <summary>PATH for the agent (default: the test's own), e.g. a directory without a tool the agent needs.</summary>
    public string? SearchPath { get; set; }

    /// <summary>RLIMIT_NOFILE (soft and hard) the agent runs with (<c>prlimit --nofile=N:N</c>); null: inherited.</summary>
    public int? FileLimit { get; set; }

    /// <summary>Environment variables the agent gets on top of the test's own (e.g. OTEL_*).</summary>
    public IDictionary<string, string> Environment { get; } = new Dictionary<string, string>();
}

/// <summary>
/// One node's agent: <c>ip netns exec NODE nodemesh run --config F</c> as a child process, with its output kept
/// for assertion messages, and the CLI commands that talk to it over its API socket.
/// </summary>
internal sealed partial class AgentProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan CliTimeout = TimeSpan.FromSeconds(20);

    private readonly StringBuilder _output = new();
    private readonly Lock _outputGate = new();
    private readonly string? _searchPath;
    private Process? _process;
    private readonly int? _fileLimit;
    private readonly Dictionary<string, string> _environment;
    private int _runs;
    private int _runOutputStart;

    private AgentProcess(Node node, string directory, AgentConfig config, IReadOnlyList<Pod> localPods, string? searchPath, int? fileLimit, IDictionary<string, string> environment)
    {
        _environment = new Dictionary<string, string>(environment);
        _searchPath = searchPath;
        _fileLimit = fileLimit;
        Node = node;
        Directory = directory;
        Config = config;
        LocalPods = localPods;
        ConfigPath = Path.Combine(directory, "config.json");
    }

    public Node Node { get; }

    /// <summary>This agent's files: config, state directory, API socket.</summary>
    public string Directory { get; }

    public AgentConfig Config { get; }

    public string ConfigPath { get; }

    public string SocketPath => Config.ApiSocket;

    public string StateDir => Config.StateDir;

    /// <summary>The pods in the config file.</summary>
    public IReadOnlyList<Pod> LocalPods { get; }

    public int? Pid => _process?.Id;

    /// <summary>File descriptors the running agent holds now (/proc/PID/fd).</summary>
    public int OpenFileDescriptors => System.IO.Directory.GetFileSystemEntries($"/proc/{RunningPid}/fd").Length;

    /// <summary>User plus system CPU time the agent has used, in clock ticks (/proc/PID/stat fields 14 and 15).</summary>
    public long CpuTicks
    {
        get
        {
            string stat = File.ReadAllText($"/proc/{RunningPid}/stat");
            string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }
    }

    private int RunningPid => _process is { HasExited: false } running ? running.Id : throw new InvalidOperationException(Explain("the agent is not running"));

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Everything the agent printed, over all its runs.</summary>
    public string Output
    {
        get
        {
            lock (_outputGate)
            {
                return _output.ToString();
            }
        }
    }

    internal static AgentProcess Create(Topology topology, Node node, AgentSetup setup, string name)
    {
        IReadOnlyList<Pod> local = setup.LocalPods ?? node.Pods;
        IReadOnlyList<Pod> remote = setup.RemotePods ?? topology.Pods.Where(p => p.Node != node).ToList();
        string directory = Path.Combine(topology.WorkDir, name);
        System.IO.Directory.CreateDirectory(directory);
        var config = new AgentConfig
        {
            Node = new NodeConfig { Name = node.Name, Address = node.Ip.ToString() },
            TrustDomain = Topology.TrustDomain,
            Ca = new CaConfig { Dir = setup.CaDir ?? topology.CaDir },
            StateDir = Path.Combine(directory, "state"),
            ApiSocket = Path.Combine(directory, "agent.sock"),
            DrainTimeout = setup.DrainTimeout,
            Tunnel = setup.Tunnel,
            Workloads = local.Select(p => new WorkloadConfig
                {
                    Name = p.Name, Ip = p.Ip.ToString(), Identity = p.Identity, Netns = p.NetnsPath,
                    Mode = setup.Modes.TryGetValue(p.Name, out string? mode) ? mode : "PERMISSIVE",
                })
                .Concat(setup.ExtraWorkloads).ToList(),
            Policies = [.. setup.Policies],
            Nodes = topology.Nodes.Where(n => n != node).Select(n => new PeerNodeConfig { Name = n.Name, Address = n.Ip.ToString() }).ToList(),
            RemoteWorkloads = remote.Select(p => new RemoteWorkloadConfig { Name = p.Name, Ip = p.Ip.ToString(), Identity = p.Identity, Node = p.Node.Name }).ToList(),
        };
        setup.Customize?.Invoke(config);
        var agent = new AgentProcess(node, directory, config, local, setup.SearchPath, setup.FileLimit, setup.Environment);
        File.WriteAllText(agent.ConfigPath, JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig));
        return agent;
    }

    /// <summary>Waits until the agent's output contains <paramref name="text"/> (log lines reach the test a moment after they are written).</summary>
    public async Task<bool> WaitForOutputAsync(string text, TimeSpan? timeout = null)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (watch.Elapsed > (timeout ?? TimeSpan.FromSeconds(10)))
            {
                return false;
            }

            await Task.Delay(100);
        }

        return true;
    }

    /// <summary>Rewrites the configuration file (the agent reloads policies, modes, labels and routes by itself).</summary>
    public void RewriteConfig(Action<AgentConfig> change)
    {
        change(Config);
        string temp = ConfigPath + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(Config, ConfigJsonContext.Default.AgentConfig));
        File.Move(temp, ConfigPath, overwrite: true);
    }

    /// <summary>Starts the agent and waits until its API answers and lists every configured pod.</summary>
    public async Task StartAsync()
    {
        Launch();
        await WaitReadyAsync();
    }

    private Process Launch()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException($"the {Node.Name} agent is already running (pid {Pid})");
        }

        _runs++;
        AppendOutput($"--- {Node.Name} agent, run {_runs}: nodemesh run --config {ConfigPath} ---");
        lock (_outputGate)
        {
            _runOutputStart = _output.Length;
        }

        // prlimit sets the limit and execs, like `ip netns exec`: the process started is still the agent.
        string[] command = ["ip", "netns", "exec", Node.Namespace, TestPaths.NodeMesh, "run", "--config", ConfigPath];
        if (_fileLimit is int limit)
        {
            command = ["prlimit", $"--nofile={limit}:{limit}", .. command];
        }

        var start = new ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string arg in command[1..])
        {
            start.ArgumentList.Add(arg);
        }

        if (_searchPath is not null)
        {
            start.Environment["PATH"] = _searchPath;
        }

        foreach ((string name, string value) in _environment)
        {
            start.Environment[name] = value;
        }

        // `ip netns exec` execs the command (no fork), so this process *is* the agent: signals reach it directly.
        _process?.Dispose();
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => AppendOutput(e.Data);
        process.ErrorDataReceived += (_, e) => AppendOutput(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        return process;
    }

    /// <summary>
    /// Starts an agent that is expected to refuse to run, and waits for it to exit (killed after
    /// <paramref name="timeout"/> if it does not). Returns its exit code; its output is in <see cref="Output"/>.
    /// </summary>
    public async Task<int> RunUntilExitAsync(TimeSpan timeout)
    {
        Process process = Launch();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            await process.WaitForExitAsync();
            throw new TimeoutException(Explain($"the {Node.Name} agent was expected to exit, but still ran after {timeout.TotalSeconds} s (killed)"));
        }

        AppendOutput($"--- {Node.Name} agent exited with code {process.ExitCode} ---");
        return process.ExitCode;
    }

    private async Task WaitReadyAsync()
    {
        var watch = Stopwatch.StartNew();
        string last = "";
        while (watch.Elapsed < ReadyTimeout)
        {
            if (_process is not { HasExited: false })
            {
                await _process!.WaitForExitAsync();
                throw new InvalidOperationException(Explain($"the {Node.Name} agent exited with code {_process.ExitCode} during start-up"));
            }

            CommandResult list = await CliAsync("workload", "list", "--json");
            if (list.Succeeded)
            {
                List<WorkloadInfo> workloads = ParseWorkloads(list.Stdout);

                // The admin server starts after the local API: a test that exhausts fds or kills at once must not race it.
                if (LocalPods.All(p => workloads.Any(w => w.Name == p.Name)) && AdminStarted())
                {
                    return;
                }

                last = list.Stdout;
            }
            else
            {
                last = list.ToString();
            }

            await Task.Delay(100);
        }

        throw new TimeoutException(Explain($"the {Node.Name} agent was not ready within {ReadyTimeout.TotalSeconds} s; last 'workload list': {last}"));
    }

    private bool AdminStarted()
    {
        if (Config.Ports is { Admin: 0, Metrics: 0, Readiness: 0 })
        {
            return true;
        }

        lock (_outputGate)
        {
            return _output.ToString(_runOutputStart, _output.Length - _runOutputStart).Contains("admin on 127.0.0.1:", StringComparison.Ordinal);
        }
    }

    /// <summary>SIGTERM, then waits for the agent to drain and exit.</summary>
    public async Task<int> StopAsync()
    {
        Process process = _process ?? throw new InvalidOperationException("the agent was never started");
        if (!process.HasExited)
        {
            await Command.RunCheckedAsync(TimeSpan.FromSeconds(5), "kill", "-TERM", process.Id.ToString(CultureInfo.InvariantCulture));
            using var deadline = new CancellationTokenSource(Config.DrainTimeout + TimeSpan.FromSeconds(20));
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill();
                await process.WaitForExitAsync();
                throw new TimeoutException(Explain($"the {Node.Name} agent did not exit within {(Config.DrainTimeout + TimeSpan.FromSeconds(20)).TotalSeconds} s of SIGTERM (killed)"));
            }
        }

        AppendOutput($"--- {Node.Name} agent exited with code {process.ExitCode} after SIGTERM ---");
        return process.ExitCode;
    }

    /// <summary>SIGKILL: the agent gets no chance to clean anything up (a crash).</summary>
    public async Task KillAsync()
    {
        Process process = _process ?? throw new InvalidOperationException("the agent was never started");
        if (!process.HasExited)
        {
            process.Kill();
            await process.WaitForExitAsync();
            AppendOutput($"--- {Node.Name} agent killed (SIGKILL) ---");
        }
    }

    /// <summary>Stops the agent if it runs (SIGTERM), and starts it again with the same configuration and state.</summary>
    public async Task RestartAsync()
    {
        if (IsRunning)
        {
            await StopAsync();
        }

        await StartAsync();
    }

    /// <summary>The agent's recent flows (<c>nodemesh flows --json</c>).</summary>
    public async Task<IReadOnlyList<FlowRecord>> FlowsAsync()
    {
        CommandResult result = await CheckedCliAsync("flows", "--json");
        return result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => JsonSerializer.Deserialize(line, ApiJsonContext.Default.FlowRecord)
                ?? throw new InvalidOperationException($"'nodemesh flows --json' printed a null record: {line}"))
            .ToList();
    }

    /// <summary>Polls the flow log until <paramref name="count"/> flows match (flows are recorded when they end).</summary>
    public async Task<IReadOnlyList<FlowRecord>> WaitForFlowsAsync(Func<FlowRecord, bool> match, int count = 1, TimeSpan? timeout = null)
    {
        var watch = Stopwatch.StartNew();
        IReadOnlyList<FlowRecord> flows;
        while (true)
        {
            flows = await FlowsAsync();
            List<FlowRecord> matching = flows.Where(match).ToList();
            if (matching.Count >= count)
            {
                return matching;
            }

            if (watch.Elapsed > (timeout ?? TimeSpan.FromSeconds(10)))
            {
                break;
            }

            await Task.Delay(200);
        }

        throw new TimeoutException(Explain($"the {Node.Name} agent recorded fewer than {count} matching flows; its flows:\n  " +
            string.Join("\n  ", flows.Select(Describe))));
    }

    /// <summary><c>nodemesh status --json</c>.</summary>
    public async Task<AgentStatus> StatusAsync()
    {
        CommandResult result = await CheckedCliAsync("status", "--json");
        return JsonSerializer.Deserialize(result.Stdout, ApiJsonContext.Default.AgentStatus)
            ?? throw new InvalidOperationException($"'nodemesh status --json' printed nothing usable: {result.Stdout}");
    }

    public Task<CommandResult> WorkloadAddAsync(Pod pod) =>
        CliAsync("workload", "add", "--name", pod.Name, "--ip", pod.Ip.ToString(), "--identity", pod.Identity, "--netns", pod.NetnsPath);

    public Task<CommandResult> WorkloadRemoveAsync(Pod pod) => CliAsync("workload", "remove", "--name", pod.Name);

    public async Task<IReadOnlyList<WorkloadInfo>> WorkloadListAsync() => ParseWorkloads((await CheckedCliAsync("workload", "list", "--json")).Stdout);

    /// <summary>Runs <c>nodemesh ARGS --socket S</c> against this agent.</summary>
    public Task<CommandResult> CliAsync(params string[] args) =>
        Command.RunAsync(CliTimeout, TestPaths.NodeMesh, [.. args, "--socket", SocketPath]);

    private async Task<CommandResult> CheckedCliAsync(params string[] args)
    {
        CommandResult result = await CliAsync(args);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException(Explain($"{result}"));
        }

        return result;
    }

    /// <summary><paramref name="message"/> followed by this agent's output.</summary>
    public string Explain(string message) => $"{message}\n{Describe()}";

    /// <summary>"running, pid N", "exited (CODE)" or "never started".</summary>
    public string State
    {
        get
        {
            try
            {
                return _process is null ? (_runs == 0 ? "never started" : "disposed")
                    : _process.HasExited ? $"exited ({_process.ExitCode})" : $"running, pid {_process.Id}";
            }
            catch (InvalidOperationException)
            {
                return "disposed";
            }
        }
    }

    /// <summary>The agent's state and the last lines of its output.</summary>
    public string Describe(int lines = 80)
    {
        string state = State;
        string[] all = Output.Split('\n');
        string tail = string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        return $"=== {Node.Name} agent: {state}; last {lines} lines of output ===\n{tail}";
    }

    public static string Describe(FlowRecord f) =>
        $"{f.Direction} {f.Path} {f.Source} ({f.SourceIdentity ?? "-"}) -> {f.Destination} ({f.DestinationIdentity ?? "-"}) " +
        $"enc={f.Encrypted} sent={f.BytesSent} recv={f.BytesReceived}: {f.Result}";

    private static List<WorkloadInfo> ParseWorkloads(string json) =>
        JsonSerializer.Deserialize(json, ApiJsonContext.Default.ListWorkloadInfo) ?? [];

    private void AppendOutput(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_outputGate)
        {
            _output.Append(line).Append('\n');
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }

            AppendOutput($"--- {Node.Name} agent at the end of the test: {State} ---");
            _process.Dispose();
            _process = null;
        }
    }

}
