using NodeMesh.Capture;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// When an agent is down, a pod's connections to mesh destinations fail, and fail fast; nothing is sent in
/// plaintext instead. When the agent is back, they work again.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class FailClosedTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;
    private static readonly TimeSpan FailFast = TimeSpan.FromSeconds(5);

    /// <summary>How long a flow over a silently dead tunnel may wait before it is reset (the keepalive declares a
    /// peer dead after 15 s of silence, checked every 5 s).</summary>
    private static readonly TimeSpan PartitionLimit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task DestinationAgentKilled_NewConnectionsFailFast_NothingInPlaintext_AndWorkAgainAfterRestart()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult before = await client.ProbeAsync(echo.EndPoint, "hello");
        Assert.True(before.Outcome == ProbeOutcome.Answered, mesh.Explain($"before the kill: {before}"));

        await mesh.Agent(2).KillAsync();
        LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
        string marker = TestData.Marker("down");
        var attempts = new List<ProbeResult>();
        for (int i = 0; i < 3; i++)
        {
            attempts.Add(await client.ProbeAsync(echo.EndPoint, marker, FailFast));
        }

        CapturedTraffic wire = await link.StopAsync();

        Assert.True(attempts.All(a => a.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset),
            mesh.Explain($"with the destination's agent down, connections must be refused or reset within {FailFast.TotalSeconds} s; got: {string.Join("; ", attempts)}"));
        Assert.False(wire.Contains(marker), mesh.Explain($"the marker crossed the link in plaintext while the destination agent was down ({wire})"));
        Assert.Empty(echo.Connections.Skip(1));
        IReadOnlyList<FlowRecord> refused = await mesh.Agent(1).WaitForFlowsAsync(f => f.Direction == "outbound" && f.Result.StartsWith("refused:", StringComparison.Ordinal), count: 3);
        Assert.All(refused, f => Assert.Equal(echo.EndPoint.ToString(), f.Destination));

        await mesh.Agent(2).StartAsync();
        ProbeResult after = await client.ProbeAsync(echo.EndPoint, "hello again", TimeSpan.FromSeconds(10));
        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "hello again" }, mesh.Explain($"after the destination agent restarted: {after}"));
    }

    [Fact]
    public async Task SourceAgentKilled_NewConnectionsAreRefused_RulesStay_NothingInPlaintext()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        TcpTestServer external = await mesh.Ext.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult before = await client.ProbeAsync(echo.EndPoint, "hello");
        Assert.True(before.Outcome == ProbeOutcome.Answered, mesh.Explain($"before the kill: {before}"));

        await mesh.Agent(1).KillAsync();
        LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
        string marker = TestData.Marker("srcdown");
        ProbeResult toMesh = await client.ProbeAsync(echo.EndPoint, marker, FailFast);
        ProbeResult toExt = await client.ProbeAsync(external.EndPoint, marker, FailFast);
        CapturedTraffic wire = await link.StopAsync();
        string rules = await client.IptablesSaveAsync();

        Assert.True(toMesh.Outcome == ProbeOutcome.Refused, mesh.Explain($"with the pod's own agent down, a connection to a mesh pod must be refused; got {toMesh}"));
        Assert.True(toExt.Outcome == ProbeOutcome.Refused, mesh.Explain($"with the pod's own agent down, every captured connection is refused (fail closed); to ext got {toExt}"));
        Assert.False(wire.Contains(marker), $"the marker crossed the link in plaintext while the source agent was down ({wire})");
        Assert.Contains(CaptureRules.NatChain, rules, StringComparison.Ordinal);
        Assert.Single(echo.Connections);
        Assert.Empty(external.Connections);

        await mesh.Agent(1).StartAsync();
        ProbeResult after = await client.ProbeAsync(echo.EndPoint, "hello again", TimeSpan.FromSeconds(10));
        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "hello again" }, mesh.Explain($"after the source agent restarted: {after}"));
    }

    [Fact]
    public async Task PeerAgentOfAnotherCa_IsRefusedBothWays_NothingInPlaintext()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        string foreignCa = await mesh.CreateCaAsync("foreign-ca");
        await mesh.StartAgentAsync(mesh.Node(1));
        await mesh.StartAgentAsync(mesh.Node(2), s => s.CaDir = foreignCa);
        TcpTestServer echo2 = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        TcpTestServer echo1 = await mesh.Pod(1, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
        string marker = TestData.Marker("foreign");

        ProbeResult there = await mesh.Pod(1, 1).ProbeAsync(echo2.EndPoint, marker, FailFast);
        ProbeResult back = await mesh.Pod(2, 1).ProbeAsync(echo1.EndPoint, marker, FailFast);
        CapturedTraffic wire = await link.StopAsync();

        Assert.True(there.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset, mesh.Explain($"node1 -> node2 (other CA): {there}"));
        Assert.True(back.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset, mesh.Explain($"node2 -> node1 (other CA): {back}"));
        Assert.Empty(echo1.Connections);
        Assert.Empty(echo2.Connections);
        Assert.False(wire.Contains(marker), $"the marker crossed the link in plaintext ({wire})");
        Assert.True((await mesh.Agent(1).StatusAsync()).FlowsRefused >= 1, mesh.Explain("node1 did not count the refused flow"));
    }

    [Fact]
    public async Task PeerPartitioned_NewFlowsFailFast_AndWorkAgainWhenTheLinkReturns()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult before = await client.ProbeAsync(echo.EndPoint, "before");
        Assert.True(before.Outcome == ProbeOutcome.Answered, mesh.Explain($"before the partition: {before}"));

        // Node2 vanishes from the network: its tunnel port silently drops everything (no RST, no FIN). The
        // pooled connection looks alive until the keepalive gives up on it; a new flow must fail then, not hang.
        LinkFault partition = await LinkFault.DropTcpPortAsync(mesh.Node(2), 15008);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        ProbeResult during = await client.ProbeAsync(echo.EndPoint, "during", PartitionLimit);
        TimeSpan failedAfter = watch.Elapsed;
        await partition.RestoreAsync();
        ProbeResult after = await client.ProbeAsync(echo.EndPoint, "after", TimeSpan.FromSeconds(15));

        string story = $"during the partition: {during} after {failedAfter.TotalSeconds:F1} s; after it: {after}";
        output.WriteLine(story);
        Assert.True(during.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset,
            mesh.Explain($"while node2 is unreachable, a new flow must fail (within {PartitionLimit.TotalSeconds} s), not hang or succeed: {story}"));
        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "after" }, mesh.Explain($"once the link is back, flows must work again: {story}"));
    }
}
