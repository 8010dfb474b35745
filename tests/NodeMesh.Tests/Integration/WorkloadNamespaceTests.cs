using NodeMesh.Interop;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A workload's namespace is the one it was registered with: a path that comes to name another namespace is
/// refused after a restart and never used for its rules, and the agent's own namespace is never a workload's.
/// The pods are registered through a symbolic link, which can be pointed elsewhere the way a reused
/// <c>/proc/PID/ns/net</c> comes to name another process's namespace.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class WorkloadNamespaceTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SavedWorkload_WhosePathNowNamesAnotherNamespace_IsNotRestored_AndTheOtherNamespaceIsUntouched()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 3, output);
        Pod registered = mesh.Pod(1, 2), other = mesh.Pod(1, 3);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [mesh.Pod(1, 1)]);
        string link = await AddThroughLinkAsync(mesh, agent, registered);

        await agent.StopAsync();
        PointLink(link, other);
        await agent.StartAsync();

        Assert.DoesNotContain(await agent.WorkloadListAsync(), w => w.Name == registered.Name);
        ulong expected = NetworkNamespace.Identify(registered.NetnsPath).Inode, found = NetworkNamespace.Identify(other.NetnsPath).Inode;
        Assert.True(agent.Output.Contains($"workload '{registered.Name}': {link} now names another network namespace", StringComparison.Ordinal)
            && agent.Output.Contains($"registered with inode {expected}", StringComparison.Ordinal)
            && agent.Output.Contains($"found inode {found}", StringComparison.Ordinal),
            agent.Explain("the refusal must name the workload, the path, and the registered and found inodes"));
        Assert.DoesNotContain("NODEMESH", await other.IptablesSaveAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WorkloadRemove_AfterThePathMoved_RemovesTheRulesFromTheNamespaceItCaptured()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 3, output);
        Pod registered = mesh.Pod(1, 2), other = mesh.Pod(1, 3);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [mesh.Pod(1, 1)]);
        string link = await AddThroughLinkAsync(mesh, agent, registered);
        Assert.Contains("NODEMESH", await registered.IptablesSaveAsync(), StringComparison.Ordinal);

        PointLink(link, other);
        CommandResult remove = await agent.WorkloadRemoveAsync(registered);

        Assert.True(remove.Succeeded, agent.Explain(remove.ToString()));
        string left = await registered.IptablesSaveAsync();
        Assert.False(left.Contains("NODEMESH", StringComparison.Ordinal), agent.Explain($"{registered.Name} keeps its rules after remove:\n{left}"));
        Assert.DoesNotContain("NODEMESH", await other.IptablesSaveAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WorkloadAdd_OfTheAgentsOwnNamespace_IsRefused_AndInstallsNothing()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod free = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [mesh.Pod(1, 1)]);

        CommandResult add = await AddThroughAsync(agent, free, mesh.Node(1).NetnsPath);

        Assert.True(!add.Succeeded && add.Stderr.Contains("is the agent's own network namespace", StringComparison.Ordinal),
            agent.Explain($"the agent's own namespace must be refused: {add}"));
        Assert.DoesNotContain("NODEMESH", await mesh.Node(1).IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.True(agent.IsRunning, agent.Explain("the agent died"));
        Assert.Single(await agent.WorkloadListAsync());
    }

    /// <summary>Registers <paramref name="pod"/> through a symbolic link to its namespace; returns the link.</summary>
    private static async Task<string> AddThroughLinkAsync(Topology mesh, AgentProcess agent, Pod pod)
    {
        string link = Path.Combine(mesh.WorkDir, "pod-netns");
        File.CreateSymbolicLink(link, pod.NetnsPath);
        CommandResult add = await AddThroughAsync(agent, pod, link);
        Assert.True(add.Succeeded, agent.Explain(add.ToString()));
        return link;
    }

    private static void PointLink(string link, Pod pod)
    {
        File.Delete(link);
        File.CreateSymbolicLink(link, pod.NetnsPath);
    }

    private static Task<CommandResult> AddThroughAsync(AgentProcess agent, Pod pod, string netns) =>
        agent.CliAsync("workload", "add", "--name", pod.Name, "--ip", pod.Ip.ToString(), "--identity", pod.Identity, "--netns", netns);
}
