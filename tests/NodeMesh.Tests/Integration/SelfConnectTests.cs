using System.Diagnostics;
using System.Net;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A workload that connects to the agent's own listeners (127.0.0.1:15001, its pod IP on 15001 or 15006) is
/// refused at once: one flow, one record, a few fds, never a chain of the agent connecting to itself.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class SelfConnectTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("loopback", 15001)]
    [InlineData("pod ip", 15001)]
    [InlineData("pod ip", 15006)]
    public async Task ConnectToTheAgentsOwnListener_IsRefusedQuickly_WithOneFlowRecord(string address, int port)
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1));
        Pod pod = mesh.Pod(1, 1);
        var target = new IPEndPoint(address == "loopback" ? IPAddress.Loopback : pod.Ip, port);
        int fdsBefore = agent.OpenFileDescriptors;

        var watch = Stopwatch.StartNew();
        ProbeResult probe = await pod.ProbeAsync(target, "GET / HTTP/1.0\r\n\r\n", TimeSpan.FromSeconds(5));
        watch.Stop();

        Assert.True(probe.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset,
            mesh.Explain($"{pod.Name} -> {target} (the agent's own listener) must be refused or reset; got {probe}"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), mesh.Explain($"refusing {target} took {watch.Elapsed.TotalMilliseconds:0} ms"));

        // A chain would go on after the client is gone: give it time to show, then count.
        await Task.Delay(1000);
        int fdsAfter = agent.OpenFileDescriptors;
        Assert.True(fdsAfter <= fdsBefore + 8, mesh.Explain($"the agent held {fdsBefore} fds before and {fdsAfter} after one connect to {target}"));
        IReadOnlyList<FlowRecord> flows = await agent.FlowsAsync();
        List<FlowRecord> toTarget = flows.Where(f => f.Destination == target.ToString()).ToList();
        Assert.True(toTarget.Count <= 1, mesh.Explain($"{toTarget.Count} flows recorded to {target}, expected at most one:\n  " +
            string.Join("\n  ", toTarget.Take(10).Select(AgentProcess.Describe))));
        if (address == "loopback")
        {
            FlowRecord flow = Assert.Single(toTarget);
            Assert.StartsWith("refused", flow.Result, StringComparison.Ordinal);
        }

        Assert.True(agent.IsRunning, mesh.Explain("the agent died"));
    }
}
