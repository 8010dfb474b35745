using System.Net.Sockets;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Applications in pods just connect to other pods' addresses: across nodes the agents carry the flow through
/// an mTLS tunnel, on one node the agent delivers it locally; either way the bytes arrive intact and the server
/// sees the client pod's own address.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class PodTrafficTests(ITestOutputHelper output)
{
    private const int HttpPort = 8080;
    private const int BulkPort = 5201;
    private const int BulkBytes = 64 * 1024 * 1024;
    private static readonly TimeSpan BulkTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task CrossNode_Http_ReachesServer_WithClientPodIp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        await CurlReachesServerWithClientIpAsync(mesh, mesh.Pod(1, 1), mesh.Pod(2, 1));

        FlowRecord outbound = (await mesh.Agent(1).WaitForFlowsAsync(f => f.Direction == "outbound" && f.Destination == $"{mesh.Pod(2, 1).Ip}:{HttpPort}"))[0];
        Assert.True(outbound is { Path: "tunnel", Encrypted: true, Result: "ok" }, mesh.Explain($"node1 recorded {AgentProcess.Describe(outbound)}"));
    }

    [Fact]
    public async Task SameNode_Http_ReachesServer_WithClientPodIp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        await mesh.StartAgentsAsync();
        await CurlReachesServerWithClientIpAsync(mesh, mesh.Pod(1, 1), mesh.Pod(1, 2));

        FlowRecord local = (await mesh.Agent(1).WaitForFlowsAsync(f => f.Direction == "outbound" && f.Destination == $"{mesh.Pod(1, 2).Ip}:{HttpPort}"))[0];
        Assert.True(local is { Path: "local", Result: "ok" }, mesh.Explain($"node1 recorded {AgentProcess.Describe(local)}"));
        Assert.Equal(mesh.Pod(1, 1).Identity, local.SourceIdentity);
        Assert.Equal(mesh.Pod(1, 2).Identity, local.DestinationIdentity);
    }

    [Fact]
    public async Task CrossNode_BulkTransfer_IsByteExact_BothWays()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        await BulkTransferIsExactAsync(mesh, mesh.Pod(1, 1), mesh.Pod(2, 1));
    }

    [Fact]
    public async Task SameNode_BulkTransfer_IsByteExact_BothWays()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        await mesh.StartAgentsAsync();
        await BulkTransferIsExactAsync(mesh, mesh.Pod(1, 1), mesh.Pod(1, 2));
    }

    [Fact]
    public async Task CrossNode_ServerThatClosesMidUpload_ResetsTheClientPromptly_AndBothAgentsEndTheFlow()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        await server.StartTcpServerAsync(7400, ServerMode.CloseAfter(1024 * 1024));

        using Socket socket = await client.ConnectAsync(server.EndPoint(7400));
        StreamResult upload = await socket.SendAllAsync(TestData.RandomBytes(8 * 1024 * 1024), TimeSpan.FromSeconds(20), times: 16);
        Assert.True(upload.End is StreamEnd.Reset or StreamEnd.Error, mesh.Explain($"upload to a server that went away ended with {upload}"));

        // Neither agent may keep the flow open: the receiving agent tells the sending one.
        FlowRecord outbound = (await mesh.Agent(1).WaitForFlowsAsync(f => f.Direction == "outbound" && f.Destination.EndsWith(":7400", StringComparison.Ordinal)))[0];
        FlowRecord inbound = (await mesh.Agent(2).WaitForFlowsAsync(f => f.Direction == "inbound" && f.Destination.EndsWith(":7400", StringComparison.Ordinal)))[0];
        Assert.StartsWith("aborted", outbound.Result, StringComparison.Ordinal);
        Assert.StartsWith("aborted", inbound.Result, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CrossNode_ReceivingAgent_ReportsTheCallersSpiffeId()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 2), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(7000, ServerMode.Echo);

        string clientEndPoint;
        using (Socket socket = await client.ConnectAsync(echo.EndPoint))
        {
            clientEndPoint = socket.LocalEndPoint!.ToString()!;
            StreamResult answer = await socket.ExchangeAsync(TestData.Ascii("who am i"), TimeSpan.FromSeconds(10));
            Assert.True(answer is { End: StreamEnd.CleanEof, HeadText: "who am i" }, mesh.Explain($"echo through the mesh: {answer}"));
        }

        (ServerConnection seen, _) = await echo.SingleResultAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(client.Ip, seen.RemoteEndPoint.Address);

        FlowRecord inbound = (await mesh.Agent(2).WaitForFlowsAsync(f => f.Direction == "inbound" && f.Destination == echo.EndPoint.ToString()))[0];
        Assert.True(
            inbound is { Path: "tunnel", Encrypted: true, Result: "ok" }
            && inbound.SourceIdentity == client.Identity
            && inbound.DestinationIdentity == server.Identity
            && inbound.Source == clientEndPoint,
            mesh.Explain($"expected an inbound tunnel flow from {client.Identity} at {clientEndPoint} to {server.Identity}, encrypted; node2 recorded {AgentProcess.Describe(inbound)}"));
        Assert.Equal(8, inbound.BytesSent);
        Assert.Equal(8, inbound.BytesReceived);
    }

    [Fact]
    public async Task CrossNode_200ConcurrentFlows_AllSucceed_OverAFewTunnelConnections()
    {
        const int Flows = 200;
        const int StreamsPerConnection = 100;
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentAsync(mesh.Node(1), s => s.Tunnel = new TunnelConfig { MaxStreamsPerConnection = StreamsPerConnection });
        await mesh.StartAgentAsync(mesh.Node(2));
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(7000, ServerMode.Echo);

        // All flows are open at once: each is connected and has had its message echoed before any closes.
        Socket[] sockets = await Task.WhenAll(Enumerable.Range(0, Flows).Select(_ => client.ConnectAsync(echo.EndPoint, TimeSpan.FromSeconds(30))));
        StreamResult[] echoes = await Task.WhenAll(sockets.Select(async (socket, i) =>
        {
            byte[] message = TestData.Ascii($"flow {i:D3} of {Flows}\n");
            await socket.SendAsync(message, SocketFlags.None);
            return await socket.ReceiveExactlyAsync(message.Length, TimeSpan.FromSeconds(60));
        }));
        IReadOnlyList<ServerConnection> accepted = await echo.WaitForConnectionsAsync(Flows, TimeSpan.FromSeconds(30));
        AgentStatus whileOpen = await mesh.Agent(1).StatusAsync();

        StreamResult[] ends = await Task.WhenAll(sockets.Select(socket =>
        {
            socket.Shutdown(SocketShutdown.Send);
            return socket.ReadToEndAsync(TimeSpan.FromSeconds(30));
        }));

        string[] wrong = echoes.Select((e, i) => (e, i)).Where(x => x.e.HeadText != $"flow {x.i:D3} of {Flows}\n").Select(x => $"flow {x.i}: {x.e} '{x.e.HeadText}'").ToArray();
        Assert.True(wrong.Length == 0, mesh.Explain($"{wrong.Length} of {Flows} flows did not echo their message: {string.Join("; ", wrong.Take(10))}"));
        Assert.All(ends, e => Assert.Equal(StreamEnd.CleanEof, e.End));
        Assert.All(accepted, c => Assert.Equal(client.Ip, c.RemoteEndPoint.Address));
        // 200 open flows at 100 per connection need at least 2 connections; a handful is fine, one per flow is not.
        Assert.True(whileOpen.TunnelConnectionsOpened is >= Flows / StreamsPerConnection and <= 4,
            mesh.Explain($"{Flows} concurrent flows at {StreamsPerConnection} per connection should share 2-4 tunnel connections, but node1 dialled {whileOpen.TunnelConnectionsOpened}"));
        output.WriteLine($"{Flows} concurrent flows used {whileOpen.TunnelConnectionsOpened} tunnel connections ({whileOpen.TunnelConnections} open)");
    }

    private static async Task CurlReachesServerWithClientIpAsync(Topology mesh, Pod client, Pod server)
    {
        TcpTestServer http = await server.StartTcpServerAsync(HttpPort, ServerMode.Http);

        CommandResult curl = await client.RunAsync("curl", "-sS", "--noproxy", "*", "--max-time", "10", $"http://{http.EndPoint}/hello");

        Assert.True(curl.Succeeded, mesh.Explain(curl.ToString()));
        Assert.StartsWith($"hello from {server.Name}; client={client.Ip}:", curl.Stdout, StringComparison.Ordinal);
        (ServerConnection connection, _) = await http.SingleResultAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(client.Ip, connection.RemoteEndPoint.Address);
        Assert.StartsWith("GET /hello HTTP/1.1\r\n", connection.Request, StringComparison.Ordinal);
    }

    private static async Task BulkTransferIsExactAsync(Topology mesh, Pod client, Pod server)
    {
        byte[] payload = TestData.RandomBytes(BulkBytes);
        string expected = SocketStreams.Sha256Hex(payload);

        // Upload: the server hashes what it read and answers "BYTES SHA256".
        TcpTestServer sink = await server.StartTcpServerAsync(BulkPort, ServerMode.Sink);
        using (Socket up = await client.ConnectAsync(sink.EndPoint))
        {
            StreamResult sent = await up.SendAllAsync(payload, BulkTimeout);
            Assert.True(sent.End == StreamEnd.CleanEof, mesh.Explain($"upload {client.Name} -> {server.Name}: {sent}"));
            StreamResult answer = await up.ReadToEndAsync(BulkTimeout);
            Assert.True(answer.End == StreamEnd.CleanEof, mesh.Explain($"upload answer: {answer}"));
            Assert.Equal($"{BulkBytes} {expected}\n", answer.HeadText);
        }

        (ServerConnection upload, StreamResult received) = await sink.SingleResultAsync(BulkTimeout);
        Assert.Equal(StreamEnd.CleanEof, received.End);
        Assert.Equal(client.Ip, upload.RemoteEndPoint.Address);

        // Download: the server sends the payload and half-closes.
        TcpTestServer source = await server.StartTcpServerAsync(BulkPort + 1, ServerMode.Send(payload));
        using (Socket down = await client.ConnectAsync(source.EndPoint))
        {
            StreamResult got = await down.ReadToEndAsync(BulkTimeout, keep: 0);
            Assert.True(got.End == StreamEnd.CleanEof && got.Bytes == BulkBytes, mesh.Explain($"download {server.Name} -> {client.Name}: {got}"));
            Assert.Equal(expected, got.Sha256);
        }

        (ServerConnection download, StreamResult served) = await source.SingleResultAsync(BulkTimeout);
        Assert.Equal(StreamEnd.CleanEof, served.End);
        Assert.Equal(client.Ip, download.RemoteEndPoint.Address);
    }
}
