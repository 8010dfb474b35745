using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using NodeMesh.Config;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The agent under systemd (<c>Type=notify</c>): it is given a real AF_UNIX datagram socket as NOTIFY_SOCKET, the
/// way systemd runs a unit (but its parent is the test, not systemd: the agent must go by NOTIFY_SOCKET, as
/// sd_notify(3) does), and the test reads what arrives, in order. READY=1 must mean ready: at the instant it arrives the agent is frozen (SIGSTOP) and
/// its API socket, tunnel listener and every workload's capture are checked to be in place already.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class SystemdNotifyTests(ITestOutputHelper output)
{
    private const int TunnelPort = 15008;
    private static readonly TimeSpan WaitTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Ready_IsSentOnce_OnlyWhenTheApiTunnelListenerAndEveryCaptureAreUp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        using NotifySocket notify = NotifySocket.Bind(mesh.WorkDir);
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s => notify.Configure(s));

        Task starting = agent.StartAsync();
        Datagram ready = await notify.WaitForAsync("READY=1", WaitTimeout, agent);
        List<string> missing;
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(5), "kill", "-STOP", Pid(agent));
        try
        {
            missing = await WhatIsNotServingAsync(mesh, agent);
        }
        finally
        {
            await Command.RunCheckedAsync(TimeSpan.FromSeconds(5), "kill", "-CONT", Pid(agent));
        }

        await starting;
        Assert.True(missing.Count == 0, agent.Explain($"READY=1 arrived while the agent was not serving yet: {string.Join("; ", missing)}\n{notify}"));
        await notify.WaitForAsync("STATUS=serving 2 workloads", WaitTimeout, agent);
        Assert.True(notify.Received.Count(d => d.Text == "READY=1") == 1, agent.Explain($"READY=1 must be sent once\n{notify}"));
        Assert.DoesNotContain(notify.Received, d => d.Text.StartsWith("WATCHDOG=", StringComparison.Ordinal) || d.At < ready.At && d.Text.StartsWith("STATUS=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task FailedStart_SendsNoReady()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        using NotifySocket notify = NotifySocket.Bind(mesh.WorkDir);
        // n1p1 is captured first, then the ghost fails: a start that got most of the way is still no start.
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s =>
        {
            notify.Configure(s);
            s.ExtraWorkloads.Add(new WorkloadConfig
            {
                Name = "ghost", Ip = "10.240.1.99", Identity = $"spiffe://{Topology.TrustDomain}/ns/test/sa/ghost", Netns = $"/var/run/netns/{mesh.Prefix}-ghost",
            });
        });

        int exitCode = await agent.RunUntilExitAsync(TimeSpan.FromSeconds(15));
        await Task.Delay(300); // datagrams sent just before the exit are in the socket; give the reader a moment

        Assert.True(exitCode != 0, agent.Explain($"the agent must refuse to start with an uncapturable workload; exit code {exitCode}"));
        Assert.True(agent.Output.Contains("ghost", StringComparison.Ordinal), agent.Explain("the error must name the workload"));
        Assert.True(!notify.Received.Any(d => d.Text is "READY=1" || d.Text.StartsWith("WATCHDOG=", StringComparison.Ordinal)),
            agent.Explain($"a failed start must not report READY=1 (nor feed a watchdog)\n{notify}"));
    }

    [Fact]
    public async Task Watchdog_IsPingedAtHalfTheInterval_AfterReady()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        using NotifySocket notify = NotifySocket.Bind(mesh.WorkDir);
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s => notify.Configure(s, ("WATCHDOG_USEC", "1000000")));

        await agent.StartAsync();
        Datagram ready = await notify.WaitForAsync("READY=1", WaitTimeout, agent);
        await Task.Delay(TimeSpan.FromSeconds(3));

        List<TimeSpan> pings = notify.Received.Where(d => d.Text == "WATCHDOG=1").Select(d => d.At).ToList();
        Assert.True(pings.Count >= 4, agent.Explain($"a 1 s watchdog must be pinged about every 0.5 s: {pings.Count} pings in 3 s\n{notify}"));
        Assert.True(pings[0] > ready.At, agent.Explain($"the watchdog is fed only once the agent is ready\n{notify}"));
        TimeSpan longest = pings.Prepend(ready.At).Zip(pings, (a, b) => b - a).Max();
        Assert.True(longest < TimeSpan.FromSeconds(1), agent.Explain($"systemd would have restarted the agent: {longest.TotalMilliseconds:F0} ms without a ping\n{notify}"));
    }

    [Fact]
    public async Task Watchdog_ForAnotherPid_IsNotPinged()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        using NotifySocket notify = NotifySocket.Bind(mesh.WorkDir);
        // The watchdog belongs to another process (a wrapper that systemd started).
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s => notify.Configure(s, ("WATCHDOG_USEC", "400000"), ("WATCHDOG_PID", "1")));

        await agent.StartAsync();
        await notify.WaitForAsync("READY=1", WaitTimeout, agent);
        await notify.WaitForAsync("STATUS=serving 1 workload", WaitTimeout, agent);
        await Task.Delay(TimeSpan.FromSeconds(1));

        Assert.True(!notify.Received.Any(d => d.Text.StartsWith("WATCHDOG=", StringComparison.Ordinal)), agent.Explain($"WATCHDOG_PID names another process\n{notify}"));
    }

    /// <summary>
    /// SIGTERM with a flow open: STOPPING=1 arrives at once, before the drain (here 3 s, held by the open flow), and
    /// the watchdog is fed during the drain, so a long drain is not mistaken for a hang.
    /// </summary>
    [Fact]
    public async Task Stopping_IsSentOnSigterm_BeforeTheDrain_AndTheWatchdogIsFedThroughIt()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        using NotifySocket notify = NotifySocket.Bind(mesh.WorkDir);
        TimeSpan drain = TimeSpan.FromSeconds(3);
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s =>
        {
            notify.Configure(s, ("WATCHDOG_USEC", "1000000"));
            s.DrainTimeout = drain;
        });
        await agent.StartAsync();
        Datagram ready = await notify.WaitForAsync("READY=1", WaitTimeout, agent);
        TcpTestServer external = await mesh.Ext.StartTcpServerAsync(9000, ServerMode.Echo);
        using Socket open = await mesh.Pod(1, 1).ConnectAsync(external.EndPoint);
        await external.WaitForConnectionsAsync(1, TimeSpan.FromSeconds(10));

        TimeSpan sigterm = notify.Now;
        int exitCode = await agent.StopAsync();
        TimeSpan exited = notify.Now;

        Datagram stopping = notify.Received.FirstOrDefault(d => d.Text == "STOPPING=1")
            ?? throw new InvalidOperationException(agent.Explain($"no STOPPING=1 on SIGTERM\n{notify}"));
        Assert.True(exitCode == 0, agent.Explain($"exit code after SIGTERM: {exitCode}"));
        Assert.True(stopping.At > ready.At && stopping.At > sigterm, agent.Explain($"STOPPING=1 must follow READY=1 and the SIGTERM\n{notify}"));
        Assert.True(stopping.At - sigterm < TimeSpan.FromSeconds(1) && exited - stopping.At > drain - TimeSpan.FromMilliseconds(500),
            agent.Explain($"STOPPING=1 must come before the drain: SIGTERM at {sigterm.TotalSeconds:F2} s, exit at {exited.TotalSeconds:F2} s\n{notify}"));
        Assert.True(notify.Received.Count(d => d.Text == "WATCHDOG=1" && d.At > stopping.At) >= 2,
            agent.Explain($"the watchdog must be fed while the agent drains\n{notify}"));
    }

    private static string Pid(AgentProcess agent) => (agent.Pid ?? throw new InvalidOperationException("the agent is not running")).ToString(CultureInfo.InvariantCulture);

    /// <summary>What of "ready" is missing now: the API socket answering, the tunnel listener, each pod's listeners and rules.</summary>
    private static async Task<List<string>> WhatIsNotServingAsync(Topology mesh, AgentProcess agent)
    {
        var missing = new List<string>();
        using (var api = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                // A listening socket completes the connection from its backlog, even while its process is stopped.
                await api.ConnectAsync(new UnixDomainSocketEndPoint(agent.SocketPath));
            }
            catch (SocketException ex)
            {
                missing.Add($"API socket {agent.SocketPath}: {ex.SocketErrorCode}");
            }
        }

        CommandResult tunnel = await mesh.Node(1).RunAsync("ss", "-Hltn", $"sport = :{TunnelPort}");
        if (!tunnel.Stdout.Contains("LISTEN", StringComparison.Ordinal))
        {
            missing.Add($"tunnel listener on {TunnelPort}: {tunnel}");
        }

        foreach (Pod pod in agent.LocalPods)
        {
            CommandResult listeners = await pod.RunAsync("ss", "-Hltn", $"sport = :{agent.Config.Ports.Outbound}");
            CommandResult rules = await pod.RunAsync("iptables-save", "-t", "nat");
            if (!listeners.Stdout.Contains("LISTEN", StringComparison.Ordinal)
                || !rules.Stdout.Contains($"--to-ports {agent.Config.Ports.Outbound}", StringComparison.Ordinal))
            {
                missing.Add($"capture of {pod.Name}: {listeners}\n{rules}");
            }
        }

        return missing;
    }

    private sealed record Datagram(TimeSpan At, string Text);

    /// <summary>The receiving end of NOTIFY_SOCKET: every datagram, one per assignment line, stamped with its arrival.</summary>
    private sealed class NotifySocket : IDisposable
    {
        private readonly Socket _socket;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly List<Datagram> _received = [];
        private readonly Lock _gate = new();
        private readonly Task _reader;
        private volatile bool _disposed;

        private NotifySocket(Socket socket, string path)
        {
            _socket = socket;
            Path = path;
            // A thread of its own, blocking in recv: the arrival stamps must not wait for the test host's busy thread
            // pool (two pings stamped at the same instant were once the reader's stall, not the agent's).
            _reader = Task.Factory.StartNew(Read, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        public string Path { get; }

        public TimeSpan Now => _clock.Elapsed;

        public IReadOnlyList<Datagram> Received
        {
            get
            {
                lock (_gate)
                {
                    return [.. _received];
                }
            }
        }

        public static NotifySocket Bind(string dir)
        {
            string path = System.IO.Path.Combine(dir, "notify.sock");
            var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            try
            {
                socket.Bind(new UnixDomainSocketEndPoint(path));
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            return new NotifySocket(socket, path);
        }

        /// <summary>The environment systemd gives a Type=notify unit, and <paramref name="more"/> (the watchdog's).</summary>
        public void Configure(AgentSetup setup, params (string Name, string Value)[] more)
        {
            setup.Environment["NOTIFY_SOCKET"] = Path;
            foreach ((string name, string value) in more)
            {
                setup.Environment[name] = value;
            }
        }

        public async Task<Datagram> WaitForAsync(string text, TimeSpan timeout, AgentProcess agent)
        {
            var watch = Stopwatch.StartNew();
            while (watch.Elapsed < timeout)
            {
                if (Received.FirstOrDefault(d => d.Text == text) is { } found)
                {
                    return found;
                }

                if (_reader.IsCompleted)
                {
                    await _reader;
                }

                await Task.Delay(10);
            }

            throw new TimeoutException(agent.Explain($"no '{text}' on NOTIFY_SOCKET within {timeout.TotalSeconds} s\n{this}"));
        }

        private void Read()
        {
            Thread.CurrentThread.Priority = ThreadPriority.Highest;
            byte[] buffer = new byte[4096];
            while (true)
            {
                int n;
                try
                {
                    n = _socket.Receive(buffer, SocketFlags.None);
                }
                catch (Exception ex) when (ex is ObjectDisposedException or SocketException { SocketErrorCode: SocketError.OperationAborted or SocketError.Interrupted })
                {
                    return;
                }

                if (_disposed)
                {
                    return;
                }

                TimeSpan at = _clock.Elapsed;
                lock (_gate)
                {
                    foreach (string line in Encoding.UTF8.GetString(buffer, 0, n).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                    {
                        _received.Add(new Datagram(at, line));
                    }
                }
            }
        }

        public override string ToString() =>
            "NOTIFY_SOCKET received:\n" + string.Join('\n', Received.Select(d => $"  {d.At.TotalSeconds,7:F3} s  {d.Text}"));

        public void Dispose()
        {
            _disposed = true;
            try
            {
                _socket.Shutdown(SocketShutdown.Both); // wakes the blocked recv
            }
            catch (SocketException)
            {
                // Not connected is fine: close still wakes it below.
            }

            _socket.Dispose();
            _reader.Wait(TimeSpan.FromSeconds(5));
        }
    }
}
