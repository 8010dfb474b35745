using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>The agent's own ports inside a workload's namespace are not a service anyone can reach through the mesh.</summary>
[Collection(NetnsCollection.Name)]
public sealed class AgentPortTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("remote pod", 15001)]
    [InlineData("remote pod", 15006)]
    [InlineData("remote pod", 15008)]
    [InlineData("external host", 15001)]
    [InlineData("external host", 15006)]
    public async Task AgentPortOfAPod_IsRefused_NotServed(string caller, int port)
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod target = mesh.Pod(2, 1);
        NetnsHost from = caller == "remote pod" ? mesh.Pod(1, 1) : mesh.Ext;

        ProbeResult probe = await from.ProbeAsync(target.EndPoint(port), "GET / HTTP/1.0\r\n\r\n");

        Assert.True(probe.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset,
            mesh.Explain($"{caller} -> {target.Name}:{port} (an agent port) must be refused or reset; got {probe}"));
        Assert.True(mesh.Agent(1).IsRunning && mesh.Agent(2).IsRunning, mesh.Explain("an agent died"));
    }
}
