using System.Net;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A service's virtual address: flows from a pod are spread over its endpoints on other nodes, each carried
/// encrypted to the endpoint's agent; an endpoint that refuses is marked down and the flow is retried on another
/// before the client sees anything.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class ServiceBalancingTests(ITestOutputHelper output)
{
    private static readonly IPEndPoint Vip = IPEndPoint.Parse("10.96.0.10:80");

    [Fact]
    public async Task FlowsToAServiceAddress_AreSpreadOverItsEndpoints_AndAFailingEndpointIsSkipped_WithoutAFailedFlow()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod client = mesh.Pod(1, 1), first = mesh.Pod(2, 1), second = mesh.Pod(3, 1);
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), setup => setup.Customize = c => c.Services =
        [
            new ServiceConfig
            {
                Name = "echo", Addresses = [Vip.Address.ToString()], Ports = [new ServicePortConfig { Port = Vip.Port, TargetPort = 8080 }],
                Endpoints = [first.Name, second.Name, "not-registered"],
            },
        ]);
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2));
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3));
        await first.StartTcpServerAsync(8080, ServerMode.Echo);
        TcpTestServer failing = await second.StartTcpServerAsync(8080, ServerMode.Echo);

        for (int i = 0; i < 20; i++)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, $"spread {i}", TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == $"spread {i}", mesh.Explain($"flow {i} to the service: {probe}"));
        }

        int onFirst = (await node2.FlowsAsync()).Count(f => f.Direction == "inbound" && f.Result == "ok");
        int onSecond = (await node3.FlowsAsync()).Count(f => f.Direction == "inbound" && f.Result == "ok");
        output.WriteLine($"20 flows: {onFirst} to {first.Name}, {onSecond} to {second.Name}");
        Assert.True(onFirst > 0 && onSecond > 0 && onFirst + onSecond == 20, mesh.Explain($"not spread over both endpoints: {onFirst} and {onSecond}"));
        Assert.All(await node1.FlowsAsync(), f => Assert.True(f.Encrypted && f.Path == "tunnel" && f.Destination == Vip.ToString(), AgentProcess.Describe(f)));

        // One endpoint stops listening: its agent answers ConnectRefused, the flow goes to the other, and the
        // endpoint is left alone while it is down; no client sees a failure.
        await failing.DisposeAsync();
        for (int i = 0; i < 10; i++)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, $"failover {i}", TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == $"failover {i}", mesh.Explain($"flow {i} after {second.Name} went down: {probe}"));
        }

        Assert.True(await node1.WaitForOutputAsync($"service echo: endpoint {second.Name} marked down"), node1.Explain("the ejection is not logged"));
        int refusedOnSecond = (await node3.FlowsAsync()).Count(f => f.Direction == "inbound" && f.Outcome == FlowOutcome.Refused);
        Assert.True(refusedOnSecond is >= 1 and <= 2, mesh.Explain($"{refusedOnSecond} flows went to the endpoint marked down"));

        // A port the service does not have is refused, never passed through.
        ProbeResult wrongPort = await client.ProbeAsync(new IPEndPoint(Vip.Address, 81), "no such port", TimeSpan.FromSeconds(5));
        Assert.True(wrongPort.Outcome != ProbeOutcome.Answered, mesh.Explain($"{wrongPort}"));
        await node1.WaitForFlowsAsync(f => f.Result.Contains("service echo has no port 81", StringComparison.Ordinal));
    }
}
