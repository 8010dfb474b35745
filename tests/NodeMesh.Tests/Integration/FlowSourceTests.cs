using System.Net;
using System.Net.Sockets;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A flow header's source address must be a workload of the caller's identity on the node the tunnel comes
/// from. Here node2's agent is made to speak for n1p1 (node1's pod): it holds n1p1's identity and address as a
/// workload of its own, and a client in n2p1 sends from n1p1's address. The identity matches, but node3 knows
/// that address is node1's, and refuses the flow instead of delivering it to its pod as if n1p1 had sent it.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class FlowSourceTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;

    [Fact]
    public async Task FlowFromAnotherNode_ClaimingAWorkloadOfNode1_IsRefused()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod victim = mesh.Pod(1, 1), attacker = mesh.Pod(2, 1), target = mesh.Pod(3, 1);
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3));
        await mesh.StartAgentAsync(mesh.Node(2), s =>
        {
            s.LocalPods = [];
            s.RemotePods = [target];
            s.ExtraWorkloads.Add(new WorkloadConfig { Name = "spoof", Ip = victim.Ip.ToString(), Identity = victim.Identity, Netns = attacker.NetnsPath });
        });
        TcpTestServer echo = await target.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        CommandResult address = await attacker.RunAsync("ip", "addr", "add", $"{victim.Ip}/32", "dev", "eth0");
        Assert.True(address.Succeeded, address.ToString());

        Socket client = await attacker.InNamespaceAsync(() =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(victim.Ip, 0));
            return socket;
        });
        using (client)
        {
            await client.ConnectAsync(echo.EndPoint);
            StreamResult answer = await client.ExchangeAsync(TestData.Ascii("as n1p1"), TimeSpan.FromSeconds(5));
            Assert.True(answer.Bytes == 0, mesh.Explain($"a flow from node2 claiming {victim.Ip} must not reach {target.Name}: {answer}"));
        }

        IReadOnlyList<FlowRecord> refused = await node3.WaitForFlowsAsync(
            f => f.Direction == "inbound" && f.Result.Contains($"source {victim.Ip} is a workload of node {victim.Node.Name}, but the tunnel comes from node node2", StringComparison.Ordinal));
        Assert.NotEmpty(refused);
        Assert.Empty(echo.Connections);
    }
}
