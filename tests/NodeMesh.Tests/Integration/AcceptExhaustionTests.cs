using System.Net;
using System.Net.Sockets;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// An agent that runs out of file descriptors keeps its listeners: accepts that fail (EMFILE) are retried with a
/// backoff, without spinning, and connections are accepted again once descriptors are free.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class AcceptExhaustionTests(ITestOutputHelper output)
{
    /// <summary>Enough for the agent to start with one workload (it holds about 60) and a few dozen flows more.</summary>
    private const int FileLimit = 160;

    [Fact]
    public async Task OutOfFileDescriptors_ListenersBackOffWithoutSpinning_AndAcceptAgainAfterwards()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), setup => setup.FileLimit = FileLimit);
        Pod pod = mesh.Pod(1, 1);
        TcpTestServer echo = await mesh.Ext.StartTcpServerAsync(9000, ServerMode.Echo);
        output.WriteLine($"agent holds {agent.OpenFileDescriptors} fds of {FileLimit} at the start");

        // Passthrough flows hold two fds each; open them in bursts until the agent has no fd left.
        var held = new List<Socket>();
        for (int burst = 0; burst < 20 && agent.OpenFileDescriptors < FileLimit - 1; burst++)
        {
            // Near exhaustion the agent resets flows it cannot open upstream; a connect can see that reset.
            Socket?[] opened = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => TryConnectAsync(pod, echo.EndPoint)));
            held.AddRange(opened.OfType<Socket>());
            await Task.Delay(200);
        }

        Assert.True(agent.OpenFileDescriptors >= FileLimit - 1, agent.Explain($"{held.Count} connections did not exhaust the agent's {FileLimit} fds"));

        // The tunnel listener gets connections until one waits in its accept queue (an earlier one may take the
        // agent's last free fd), so its loop meets EMFILE with a connection queued.
        var waiting = new List<Socket>();
        int queued = 0;
        while (queued == 0 && waiting.Count < 10)
        {
            waiting.Add(await mesh.Ext.ConnectAsync(mesh.Node(1).EndPoint(15008)));
            await Task.Delay(200);
            queued = await AcceptQueueLengthAsync(mesh.Node(1), 15008);
        }

        Assert.True(queued > 0, agent.Explain($"none of {waiting.Count} tunnel connections stayed in the accept queue"));
        long before = agent.CpuTicks;
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        long used = agent.CpuTicks - before;
        Assert.True(used < 40, agent.Explain($"the exhausted agent used {used} clock ticks of CPU in 1.5 s: its accept loops spin"));
        Assert.True(agent.IsRunning, agent.Explain("the agent died of fd exhaustion"));

        foreach (Socket socket in held)
        {
            socket.Dispose();
        }

        // The tunnel listener has no new connection arriving: it must take the ones that waited through the
        // failures (an epoll edge it will never see again), within its backoff of at most 1 s.
        int left = queued;
        for (int poll = 0; poll < 30 && left > 0; poll++)
        {
            await Task.Delay(100);
            left = await AcceptQueueLengthAsync(mesh.Node(1), 15008);
        }

        Assert.True(left == 0, agent.Explain($"{left} of the {queued} connections queued at the tunnel listener through the failures were not accepted within 3 s of the fds being freed"));

        // Descriptors are back: the same listener accepts and carries new flows again (the backoff is at most 1 s).
        ProbeResult? probe = null;
        for (int attempt = 0; attempt < 5; attempt++)
        {
            probe = await pod.ProbeAsync(echo.EndPoint, "after exhaustion", TimeSpan.FromSeconds(3));
            if (probe.Outcome == ProbeOutcome.Answered)
            {
                break;
            }
        }

        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "after exhaustion" }, agent.Explain($"after the fds were freed: {probe}"));
        string tunnelRecovered = $"tunnel listener {mesh.Node(1).EndPoint(15008)}: accepting again";
        bool recoveryLogged = await agent.WaitForOutputAsync(tunnelRecovered, TimeSpan.FromSeconds(5));
        Assert.True(agent.Output.Contains($"tunnel listener {mesh.Node(1).EndPoint(15008)}: accept failed", StringComparison.Ordinal) && recoveryLogged,
            agent.Explain($"the failed accepts and the recovery ('{tunnelRecovered}') must be logged"));
        // A flow that could not open its upstream socket was refused with the reason, not logged as a crash.
        Assert.False(agent.Output.Contains(" at NodeMesh.", StringComparison.Ordinal), agent.Explain("a stack trace was logged"));
        waiting.ForEach(socket => socket.Dispose());
    }

    private static async Task<Socket?> TryConnectAsync(Pod pod, IPEndPoint destination)
    {
        try
        {
            return await pod.ConnectAsync(destination);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused)
        {
            return null;
        }
    }

    /// <summary>Connections waiting in a listener's accept queue: a listening socket's Recv-Q in <c>ss</c>.</summary>
    private static async Task<int> AcceptQueueLengthAsync(Node node, int port)
    {
        CommandResult ss = await node.RunAsync("ss", "-Hltn", $"sport = :{port}");
        Assert.True(ss.Succeeded, $"ss failed: {ss.Stderr}");
        string[] fields = ss.Stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length > 1 && int.TryParse(fields[1], out int length) ? length : throw new InvalidOperationException($"no listener on :{port} in ss: '{ss.Stdout}'");
    }
}
