using System.Net.Sockets;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>Traffic with a host outside the mesh: passed through unchanged, in both directions.</summary>
[Collection(NetnsCollection.Name)]
public sealed class PassthroughTests(ITestOutputHelper output)
{
    private const int Port = 9000;

    [Fact]
    public async Task NonMeshDestination_IsPassedThroughUnchanged_AndSeesThePodIp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        TcpTestServer sink = await mesh.Ext.StartTcpServerAsync(Port, ServerMode.Sink);
        byte[] payload = TestData.RandomBytes(4 * 1024 * 1024);

        using (Socket socket = await client.ConnectAsync(sink.EndPoint))
        {
            StreamResult answer = await socket.ExchangeAsync(payload, TimeSpan.FromSeconds(60));
            Assert.True(answer.End == StreamEnd.CleanEof, mesh.Explain($"passthrough to ext: {answer}"));
            Assert.Equal($"{payload.Length} {SocketStreams.Sha256Hex(payload)}\n", answer.HeadText);
        }

        (ServerConnection seen, StreamResult received) = await sink.SingleResultAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(client.Ip, seen.RemoteEndPoint.Address);
        Assert.Equal(StreamEnd.CleanEof, received.End);

        FlowRecord flow = (await mesh.Agent(1).WaitForFlowsAsync(f => f.Destination == sink.EndPoint.ToString()))[0];
        Assert.True(flow is { Direction: "outbound", Path: "passthrough", Encrypted: false, Result: "ok" } && flow.BytesSent == payload.Length,
            mesh.Explain($"node1 recorded {AgentProcess.Describe(flow)}"));
        Assert.Equal(client.Identity, flow.SourceIdentity);
        Assert.Null(flow.DestinationIdentity);
    }

    [Fact]
    public async Task ExternalClient_ReachesPod_ThroughInboundCapture_WithItsOwnAddress()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod server = mesh.Pod(1, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult probe = await mesh.Ext.ProbeAsync(echo.EndPoint, "from outside");

        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "from outside" }, mesh.Explain($"ext -> {server.Name}: {probe}"));
        (ServerConnection seen, _) = await echo.SingleResultAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(mesh.Ext.Ip, seen.RemoteEndPoint.Address);
        FlowRecord flow = (await mesh.Agent(1).WaitForFlowsAsync(f => f.Destination == echo.EndPoint.ToString()))[0];
        Assert.True(flow is { Direction: "inbound", Path: "plaintext", Encrypted: false, Result: "ok", SourceIdentity: null },
            mesh.Explain($"node1 recorded {AgentProcess.Describe(flow)}"));
    }
}
