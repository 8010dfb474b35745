using System.Net.Sockets;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// An agent that dies in the middle of a flow (SIGKILL: no clean-up code runs) or is stopped while one runs must
/// never make a truncated transfer look complete: both ends see a reset or an error, not an orderly end of
/// stream. A graceful stop lets short flows finish, and refuses new ones meanwhile.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class AgentStopTests(ITestOutputHelper output)
{
    private const int Port = 5201;
    private const long KillAfterBytes = 8 * 1024 * 1024;
    private const int BlockSize = 1024 * 1024;
    private const int Blocks = 4096; // 4 GiB: far more than can pass before the kill
    private static readonly TimeSpan EndTimeout = TimeSpan.FromSeconds(20);

    /// <param name="route">"cross-node" (n1p1 to n2p1 through a tunnel), "same-node" (n1p1 to n1p2, local path),
    /// or "passthrough" (n1p1 to the external host).</param>
    /// <param name="killed">"server-side": the agent of the server's node; "client-side": the caller's node's agent.</param>
    /// <param name="direction">"download": the server sends; "upload": the client sends.</param>
    [Theory]
    [InlineData("cross-node", "server-side", "download")]
    [InlineData("cross-node", "server-side", "upload")]
    [InlineData("cross-node", "client-side", "download")]
    [InlineData("cross-node", "client-side", "upload")]
    [InlineData("same-node", "client-side", "download")]
    [InlineData("same-node", "client-side", "upload")]
    [InlineData("passthrough", "client-side", "download")]
    [InlineData("passthrough", "client-side", "upload")]
    public Task AgentKilledMidTransfer_NeitherEndSeesACleanEndOfStream(string route, string killed, string direction) =>
        StopAgentMidTransferAsync(route, killed, direction, agent => agent.KillAsync());

    /// <summary>
    /// SIGTERM: the agent stops accepting and gives open flows drainSeconds (1 s here) to finish; a transfer that
    /// is still running then is cut, and must be cut with a reset, not an orderly end.
    /// </summary>
    [Theory]
    [InlineData("cross-node", "server-side", "download")]
    [InlineData("cross-node", "server-side", "upload")]
    [InlineData("cross-node", "client-side", "download")]
    [InlineData("cross-node", "client-side", "upload")]
    public Task AgentStoppedMidTransfer_FlowCutAfterDrain_NeitherEndSeesACleanEndOfStream(string route, string stopped, string direction) =>
        StopAgentMidTransferAsync(route, stopped, direction, agent => agent.StopAsync());

    [Fact]
    public async Task AgentStop_LetsAFlowInProgressFinish_AndRefusesNewOnesMeanwhile()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.DrainTimeout = TimeSpan.FromSeconds(10));
        await mesh.StartAgentAsync(mesh.Node(2));
        Pod client = mesh.Pod(1, 1);
        TcpTestServer slow = await mesh.Pod(2, 1).StartTcpServerAsync(Port, ServerMode.EchoAfter(TimeSpan.FromSeconds(2)));
        TcpTestServer quick = await mesh.Pod(2, 1).StartTcpServerAsync(Port + 1, ServerMode.Echo);
        using Socket inFlight = await client.ConnectAsync(slow.EndPoint);
        StreamResult sent = await inFlight.SendAllAsync(TestData.Ascii("in flight"), TimeSpan.FromSeconds(5));
        Assert.Equal(StreamEnd.CleanEof, sent.End);
        await slow.WaitForConnectionsAsync(1, TimeSpan.FromSeconds(10));

        Task<int> stopping = agent.StopAsync();
        // The agent closes its listeners first; from then on a new connection finds no listener behind the
        // capture rule and is refused (never let out uncaptured). Until the agent gets there probes still work,
        // and one caught in the listener's backlog as it closes is reset.
        var probes = new List<ProbeResult>();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        do
        {
            probes.Add(await client.ProbeAsync(quick.EndPoint, "new", TimeSpan.FromSeconds(5)));
        }
        while (probes[^1].Outcome is ProbeOutcome.Answered or ProbeOutcome.Reset && watch.Elapsed < TimeSpan.FromSeconds(5) && !stopping.IsCompleted);

        StreamResult answer = await inFlight.ReadToEndAsync(TimeSpan.FromSeconds(15));
        int exitCode = await stopping;

        Assert.True(probes[^1].Outcome == ProbeOutcome.Refused,
            mesh.Explain($"new connections while the agent drains must be refused; probes: {string.Join("; ", probes)}"));
        Assert.True(answer is { End: StreamEnd.CleanEof, HeadText: "in flight" }, mesh.Explain($"the flow in progress at SIGTERM must finish: {answer}"));
        Assert.True(exitCode == 0, agent.Explain($"exit code after SIGTERM: {exitCode}"));
    }

    [Fact]
    public async Task AgentStop_RefusesNewTunnelConnectionsAtOnce_WhileItsFlowsDrain()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(2), s => s.DrainTimeout = TimeSpan.FromSeconds(10));
        TcpTestServer slow = await mesh.Pod(2, 1).StartTcpServerAsync(Port, ServerMode.EchoAfter(TimeSpan.FromSeconds(6)));
        using Socket inFlight = await mesh.Pod(1, 1).ConnectAsync(slow.EndPoint);
        StreamResult sent = await inFlight.SendAllAsync(TestData.Ascii("in flight"), TimeSpan.FromSeconds(5));
        Assert.Equal(StreamEnd.CleanEof, sent.End);
        await slow.WaitForConnectionsAsync(1, TimeSpan.FromSeconds(10));
        var tunnelPort = new System.Net.IPEndPoint(mesh.Node(2).Ip, 15008);
        ProbeResult before = await mesh.Node(1).ProbeAsync(tunnelPort, "not tls", TimeSpan.FromSeconds(5));
        Assert.True(before.Outcome != ProbeOutcome.Refused, mesh.Explain($"the tunnel port before the stop: {before}"));

        Task<int> stopping = agent.StopAsync();
        ProbeResult during;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        do
        {
            during = await mesh.Node(1).ProbeAsync(tunnelPort, "not tls", TimeSpan.FromSeconds(5));
        }
        while (during.Outcome != ProbeOutcome.Refused && watch.Elapsed < TimeSpan.FromSeconds(2));

        // Refused at once, while the flow in progress still drains (it answers after 6 s).
        Assert.True(during.Outcome == ProbeOutcome.Refused && !stopping.IsCompleted, mesh.Explain($"the tunnel port while draining: {during}"));
        StreamResult answer = await inFlight.ReadToEndAsync(TimeSpan.FromSeconds(15));
        Assert.True(answer is { End: StreamEnd.CleanEof, HeadText: "in flight" }, mesh.Explain($"the flow in progress at SIGTERM must finish: {answer}"));
        Assert.Equal(0, await stopping);
    }

    private async Task StopAgentMidTransferAsync(string route, string side, string direction, Func<AgentProcess, Task> stop)
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        NetnsHost server = route switch
        {
            "cross-node" => mesh.Pod(2, 1),
            "same-node" => mesh.Pod(1, 2),
            _ => mesh.Ext,
        };
        AgentProcess victim = side == "server-side" ? mesh.Agent(2) : mesh.Agent(1);
        byte[] block = TestData.RandomBytes(BlockSize);
        bool upload = direction == "upload";
        TcpTestServer tcp = await server.StartTcpServerAsync(Port, upload ? ServerMode.Sink : ServerMode.Send(block, Blocks));
        using Socket socket = await client.ConnectAsync(tcp.EndPoint);

        long killedAt = -1;
        async Task KillOnceAsync(long total)
        {
            if (killedAt < 0 && total >= KillAfterBytes)
            {
                killedAt = total;
                await stop(victim);
            }
        }

        StreamResult clientEnd = upload
            ? await socket.SendAllAsync(block, EndTimeout, Blocks, onProgress: KillOnceAsync)
            : await socket.ReadToEndAsync(EndTimeout, keep: 0, onProgress: KillOnceAsync);
        StreamResult serverEnd;
        try
        {
            (_, serverEnd) = await tcp.SingleResultAsync(EndTimeout);
        }
        catch (TimeoutException)
        {
            serverEnd = new StreamResult(-1, "", StreamEnd.TimedOut, $"the server's side neither ended nor failed within {EndTimeout.TotalSeconds} s", []);
        }

        string story = $"{route}: the {side} agent was stopped after {killedAt} bytes of a {direction}; client: {clientEnd}; server ({server.Name}): {serverEnd}";
        output.WriteLine(story);
        Assert.True(killedAt > 0, mesh.Explain($"the transfer ended before the kill: {story}"));
        Assert.True(clientEnd.End is StreamEnd.Reset or StreamEnd.Error,
            mesh.Explain($"the client must see a reset or an error, not {clientEnd.End}: {story}"));
        Assert.True(serverEnd.End is StreamEnd.Reset or StreamEnd.Error,
            mesh.Explain($"the server must see a reset or an error, not {serverEnd.End}: {story}"));
    }
}
