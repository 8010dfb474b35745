using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>A workload's certificate is had when the workload is added, shown by `status` and `workload list`, and forgotten when it is removed.</summary>
[Collection(NetnsCollection.Name)]
public sealed class WorkloadCertificateTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AddedWorkload_HasItsCertificateBeforeAnyFlow_AndRemovingItForgetsIt()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod added = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [mesh.Pod(1, 1)]);
        Assert.DoesNotContain((await agent.StatusAsync()).Certificates, c => c.Identity == added.Identity);

        CommandResult add = await agent.WorkloadAddAsync(added);
        Assert.True(add.Succeeded, agent.Explain(add.ToString()));
        CertificateInfo? held = null;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (held?.NotAfter is null && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            held = (await agent.StatusAsync()).Certificates.FirstOrDefault(c => c.Identity == added.Identity);
            await Task.Delay(100);
        }

        Assert.True(held is { Error: null } && held.NotAfter > DateTimeOffset.UtcNow, agent.Explain($"status for {added.Identity}: {held}"));
        WorkloadInfo listed = Assert.Single(await agent.WorkloadListAsync(), w => w.Name == added.Name);
        Assert.StartsWith("valid until ", listed.Certificate, StringComparison.Ordinal);
        Assert.Empty(await agent.FlowsAsync());

        CommandResult remove = await agent.WorkloadRemoveAsync(added);
        Assert.True(remove.Succeeded, agent.Explain(remove.ToString()));
        AgentStatus status = await agent.StatusAsync();
        Assert.DoesNotContain(status.Certificates, c => c.Identity == added.Identity);
        Assert.Contains(status.Certificates, c => c.Identity == mesh.Pod(1, 1).Identity);
    }
}
