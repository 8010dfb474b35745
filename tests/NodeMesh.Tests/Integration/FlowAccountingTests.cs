using System.Net;
using System.Net.Sockets;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Every flow, on every path (outbound through a tunnel, local, passthrough; inbound from a tunnel and plaintext),
/// is a live flow of its agent while it is open (the `status` count) and is recorded exactly once when it ends,
/// with its typed outcome.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class FlowAccountingTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task OpenFlowsOnEveryPath_AreLiveInStatus_AndEachIsRecordedOnceWithItsOutcome()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1);
        TcpTestServer remote = await mesh.Pod(2, 1).StartTcpServerAsync(7100, ServerMode.Echo);
        TcpTestServer local = await mesh.Pod(1, 2).StartTcpServerAsync(7200, ServerMode.Echo);
        TcpTestServer external = await mesh.Ext.StartTcpServerAsync(7300, ServerMode.Echo);

        // One open connection on each path; each has carried a round trip, so its flow is set up end to end.
        var sockets = new List<(string Path, Socket Socket, IPEndPoint Server)>
        {
            ("tunnel", await client.ConnectAsync(remote.EndPoint), remote.EndPoint),
            ("local", await client.ConnectAsync(local.EndPoint), local.EndPoint),
            ("passthrough", await client.ConnectAsync(external.EndPoint), external.EndPoint),
            ("plaintext", await mesh.Ext.ConnectAsync(local.EndPoint), local.EndPoint),
        };
        try
        {
            foreach ((string path, Socket socket, _) in sockets)
            {
                byte[] hello = TestData.Ascii($"hello {path}");
                StreamResult sent = await socket.SendAllAsync(hello, Patience, shutdownAfter: false);
                StreamResult echoed = await socket.ReceiveExactlyAsync(hello.Length, Patience);
                Assert.True(sent.End == StreamEnd.CleanEof && echoed.Bytes == hello.Length, mesh.Explain($"round trip on the {path} path: {sent} / {echoed}"));
            }

            // node1: outbound tunnel, local and passthrough, and the plaintext inbound from ext; node2: the tunnel's inbound end.
            Assert.Equal(4, (await mesh.Agent(1).StatusAsync()).ActiveFlows);
            Assert.Equal(1, (await mesh.Agent(2).StatusAsync()).ActiveFlows);
            Assert.Empty(await mesh.Agent(1).FlowsAsync());
        }
        finally
        {
            foreach ((_, Socket socket, _) in sockets)
            {
                socket.Shutdown(SocketShutdown.Send);
            }
        }

        foreach ((string path, Socket socket, _) in sockets)
        {
            StreamResult rest = await socket.ReadToEndAsync(Patience);
            Assert.True(rest.End == StreamEnd.CleanEof, mesh.Explain($"orderly end on the {path} path: {rest}"));
            socket.Dispose();
        }

        IReadOnlyList<FlowRecord> node1 = await mesh.Agent(1).WaitForFlowsAsync(_ => true, count: 4);
        IReadOnlyList<FlowRecord> node2 = await mesh.Agent(2).WaitForFlowsAsync(_ => true, count: 1);
        await Task.Delay(500);
        node1 = await mesh.Agent(1).FlowsAsync();
        node2 = await mesh.Agent(2).FlowsAsync();

        string Explain() => mesh.Explain("node1: " + string.Join("; ", node1.Select(AgentProcess.Describe)) + " | node2: " + string.Join("; ", node2.Select(AgentProcess.Describe)));
        Assert.True(node1.Count == 4 && node2.Count == 1, Explain());
        foreach ((string path, _, IPEndPoint server) in sockets)
        {
            FlowRecord record = Assert.Single(node1, f => f.Path == path && f.Destination == server.ToString());
            Assert.True(record is { Outcome: FlowOutcome.Ok, Result: "ok" }, Explain());
        }

        Assert.True(node2[0] is { Direction: "inbound", Path: "tunnel", Outcome: FlowOutcome.Ok, Encrypted: true }, Explain());
        Assert.Equal(0, (await mesh.Agent(1).StatusAsync()).ActiveFlows);
        Assert.Equal(0, (await mesh.Agent(2).StatusAsync()).ActiveFlows);
    }
}
