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
        // Three endpoints on two nodes, the client on a third.
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 2, output);
        Pod client = mesh.Pod(1, 1);
        Pod[] endpoints = [mesh.Pod(2, 1), mesh.Pod(2, 2), mesh.Pod(3, 1)];
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), setup => setup.Customize = c => c.Services =
        [
            new ServiceConfig
            {
                Name = "echo", Addresses = [Vip.Address.ToString()], Ports = [new ServicePortConfig { Port = Vip.Port, TargetPort = 8080 }],
                Endpoints = [.. endpoints.Select(p => p.Name), "not-registered"],
            },
        ]);
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2));
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3));
        var servers = new List<TcpTestServer>();
        foreach (Pod endpoint in endpoints)
        {
            servers.Add(await endpoint.StartTcpServerAsync(8080, ServerMode.Echo));
        }

        const int Flows = 90;
        for (int i = 0; i < Flows; i++)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, $"spread {i}", TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == $"spread {i}", mesh.Explain($"flow {i} to the service: {probe}"));
        }

        List<FlowRecord> received = [.. (await node2.FlowsAsync()).Concat(await node3.FlowsAsync()).Where(f => f.Direction == "inbound" && f.Result == "ok")];
        int[] perEndpoint = [.. endpoints.Select(p => received.Count(f => f.DestinationWorkload == p.Name))];
        output.WriteLine($"{Flows} flows: {string.Join(", ", endpoints.Zip(perEndpoint, (p, n) => $"{n} to {p.Name}"))}");
        // A third each, within a tolerance the balancer misses about once in 20,000 runs (each of 90 flows a fair draw).
        Assert.True(perEndpoint.Sum() == Flows && perEndpoint.All(n => n >= 12), mesh.Explain($"not spread over the three endpoints: {string.Join(", ", perEndpoint)}"));
        Assert.All(await node1.FlowsAsync(), f => Assert.True(f.Encrypted && f.Path == "tunnel" && f.Destination == Vip.ToString(), AgentProcess.Describe(f)));

        // One endpoint stops listening: its agent answers ConnectRefused, the flow goes to another, and the
        // endpoint is left alone while it is down; no client sees a failure.
        Pod failed = endpoints[2];
        await servers[2].DisposeAsync();
        for (int i = 0; i < 30; i++)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, $"failover {i}", TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == $"failover {i}", mesh.Explain($"flow {i} after {failed.Name} went down: {probe}"));
        }

        Assert.True(await node1.WaitForOutputAsync($"service echo: endpoint {failed.Name} marked down"), node1.Explain("the ejection is not logged"));
        int refusedThere = (await node3.FlowsAsync()).Count(f => f.Direction == "inbound" && f.Outcome == FlowOutcome.Refused);
        Assert.True(refusedThere == 1, mesh.Explain($"{refusedThere} flows went to the endpoint after it failed once (marked down for 10 s)"));

        // A port the service does not have is refused, never passed through.
        ProbeResult wrongPort = await client.ProbeAsync(new IPEndPoint(Vip.Address, 81), "no such port", TimeSpan.FromSeconds(5));
        Assert.True(wrongPort.Outcome != ProbeOutcome.Answered, mesh.Explain($"{wrongPort}"));
        await node1.WaitForFlowsAsync(f => f.Result.Contains("service echo has no port 81", StringComparison.Ordinal));
    }
}
