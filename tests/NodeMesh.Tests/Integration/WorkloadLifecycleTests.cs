using NodeMesh.Capture;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>Workloads added and removed at run time through the local API (<c>nodemesh workload add|remove</c>).</summary>
[Collection(NetnsCollection.Name)]
public sealed class WorkloadLifecycleTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;

    [Fact]
    public async Task RemovedWorkload_LeavesNoCaptureRuleBehind_AndStaysRemovedAfterRestart()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod fromConfig = mesh.Pod(1, 1), fromApi = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [fromConfig]);
        CommandResult add = await agent.WorkloadAddAsync(fromApi);
        Assert.True(add.Succeeded, agent.Explain(add.ToString()));
        Assert.Contains(CaptureRules.NatChain, await fromApi.IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.Contains(Ipv6Rules.InputChain, await fromApi.Ip6tablesSaveAsync(), StringComparison.Ordinal);

        foreach (Pod pod in new[] { fromApi, fromConfig })
        {
            CommandResult remove = await agent.WorkloadRemoveAsync(pod);
            Assert.True(remove.Succeeded, agent.Explain(remove.ToString()));
            await AssertNoCaptureLeftAsync(pod, agent);
        }

        Assert.Empty(await agent.WorkloadListAsync());

        // The pods are plain namespaces again: a connection between them is not captured on either side.
        TcpTestServer echo = await fromConfig.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult direct = await fromApi.ProbeAsync(echo.EndPoint, "direct");
        Assert.True(direct.Outcome == ProbeOutcome.Answered, agent.Explain($"between two released pods: {direct}"));
        Assert.DoesNotContain(await agent.FlowsAsync(), f => f.Destination == echo.EndPoint.ToString());

        // The run-time workload is gone from the state directory too.
        await agent.RestartAsync();
        IReadOnlyList<WorkloadInfo> afterRestart = await agent.WorkloadListAsync();
        Assert.DoesNotContain(afterRestart, w => w.Name == fromApi.Name);
        await AssertNoCaptureLeftAsync(fromApi, agent);
    }

    [Fact]
    public async Task AddedWorkload_IsCaptured_AndSurvivesAgentRestartAndCrash()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod added = mesh.Pod(1, 2);
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [mesh.Pod(1, 1)]);
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2));
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);

        CommandResult add = await node1.WorkloadAddAsync(added);
        Assert.True(add.Succeeded, node1.Explain(add.ToString()));
        WorkloadInfo listed = Assert.Single(await node1.WorkloadListAsync(), w => w.Name == added.Name);
        Assert.Equal("api", listed.Source);
        await AssertCapturedThroughTunnelAsync(mesh, added, echo, "after add", expectedFlows: 1);

        await node1.RestartAsync();
        listed = Assert.Single(await node1.WorkloadListAsync(), w => w.Name == added.Name);
        Assert.True(listed is { Source: "api", Ip: "10.240.1.3" } && listed.Identity == added.Identity, node1.Explain($"after restart: {listed}"));
        await AssertCapturedThroughTunnelAsync(mesh, added, echo, "after a restart", expectedFlows: 2);

        await node1.KillAsync();
        await node1.StartAsync();
        Assert.Single(await node1.WorkloadListAsync(), w => w.Name == added.Name);
        await AssertCapturedThroughTunnelAsync(mesh, added, echo, "after a crash and start", expectedFlows: 3);
        _ = node2;
    }

    public static TheoryData<string, string, string, string, string, string> BadRegistrations() => new()
    {
        // case, --name, --ip, --identity, --netns ({pod} is the free pod's netns path), field the refusal must name
        { "shell metacharacters in the name", "x;touch /tmp/nodemesh-pwned", "{ip}", "{identity}", "{pod}", "name:" },
        { "iptables arguments in the ip", "n1p2", "10.240.1.3 -j ACCEPT", "{identity}", "{pod}", "ip:" },
        { "command substitution in the identity", "n1p2", "{ip}", "spiffe://cluster.local/ns/test/sa/$(id)", "{pod}", "identity:" },
        { "identity of another trust domain", "n1p2", "{ip}", "spiffe://evil.example/ns/test/sa/n1p2", "{pod}", "identity:" },
        { "netns that does not exist", "n1p2", "{ip}", "{identity}", "/var/run/netns/nodemesh-test-missing", "netns:" },
        { "relative netns path", "n1p2", "{ip}", "{identity}", "var/run/netns/x", "netns:" },
        { "netns path with ..", "n1p2", "{ip}", "{identity}", "/var/run/netns/../netns/x", "netns:" },
        { "loopback ip", "n1p2", "127.0.0.1", "{identity}", "{pod}", "ip:" },
        { "ip of a registered workload", "n1p2", "10.240.1.2", "{identity}", "{pod}", "ip:" },
        { "name of a registered workload", "n1p1", "{ip}", "{identity}", "{pod}", "name:" },
    };

    [Theory]
    [MemberData(nameof(BadRegistrations))]
    public async Task WorkloadAdd_WithHostileOrConflictingInput_IsRefused_AndInstallsNothing(
        string name, string workload, string ip, string identity, string netns, string field)
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod registered = mesh.Pod(1, 1), free = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.LocalPods = [registered]);
        string Fill(string value) => value.Replace("{ip}", free.Ip.ToString(), StringComparison.Ordinal)
            .Replace("{identity}", free.Identity, StringComparison.Ordinal).Replace("{pod}", free.NetnsPath, StringComparison.Ordinal);

        CommandResult add = await agent.CliAsync("workload", "add", "--name", Fill(workload), "--ip", Fill(ip), "--identity", Fill(identity), "--netns", Fill(netns));

        Assert.True(add.ExitCode != 0 && add.Stderr.Contains(field, StringComparison.Ordinal),
            agent.Explain($"{name}: 'workload add' must be refused naming '{field}'; {add}"));
        Assert.True(agent.IsRunning, agent.Explain($"{name}: the agent died"));
        WorkloadInfo only = Assert.Single(await agent.WorkloadListAsync());
        Assert.Equal(registered.Name, only.Name);
        Assert.False((await free.IptablesSaveAsync()).Contains("NODEMESH", StringComparison.Ordinal), $"{name}: rules were installed in {free.Name}");
        Assert.False((await free.Ip6tablesSaveAsync()).Contains("NODEMESH", StringComparison.Ordinal), $"{name}: ip6tables rules were installed in {free.Name}");
        Assert.False(File.Exists("/tmp/nodemesh-pwned"), $"{name}: a shell ran the workload name");
    }

    /// <summary>The pod's connection to a remote pod went through the tunnel, as its own identity.</summary>
    private static async Task AssertCapturedThroughTunnelAsync(Topology mesh, Pod pod, TcpTestServer echo, string when, int expectedFlows)
    {
        ProbeResult probe = await pod.ProbeAsync(echo.EndPoint, when, TimeSpan.FromSeconds(10));
        Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == when, mesh.Explain($"{pod.Name} {when}: {probe}"));
        IReadOnlyList<FlowRecord> inbound = await mesh.Agent(2).WaitForFlowsAsync(
            f => f.Direction == "inbound" && f.Path == "tunnel" && f.Result == "ok" && f.SourceIdentity == pod.Identity && f.Destination == echo.EndPoint.ToString(),
            count: expectedFlows);
        Assert.True(inbound.Count == expectedFlows, mesh.Explain($"{when}: expected {expectedFlows} tunnelled flows from {pod.Identity}, node2 has {inbound.Count}"));
        Assert.Contains(CaptureRules.NatChain, await pod.IptablesSaveAsync(), StringComparison.Ordinal);
    }

    private static async Task AssertNoCaptureLeftAsync(Pod pod, AgentProcess agent)
    {
        string rules = await pod.IptablesSaveAsync();
        Assert.False(rules.Contains("NODEMESH", StringComparison.Ordinal), agent.Explain($"{pod.Name} still has NodeMesh rules after 'workload remove':\n{rules}"));
        string rules6 = await pod.Ip6tablesSaveAsync();
        Assert.False(rules6.Contains("NODEMESH", StringComparison.Ordinal), agent.Explain($"{pod.Name} still has NodeMesh ip6tables rules after 'workload remove':\n{rules6}"));
        CommandResult ipRules = await pod.RunAsync("ip", "rule", "show");
        Assert.True(ipRules.Succeeded, ipRules.ToString());
        Assert.False(ipRules.Stdout.Contains($"lookup {CaptureRules.RouteTable}", StringComparison.Ordinal),
            agent.Explain($"{pod.Name} still has the NodeMesh policy-routing rule after 'workload remove':\n{ipRules.Stdout}"));
        CommandResult table = await pod.RunAsync("ip", "route", "show", "table", CaptureRules.RouteTable.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(table.Stdout.Trim().Length == 0, agent.Explain($"{pod.Name} still has routes in table {CaptureRules.RouteTable}: {table}"));
        CommandResult listeners = await pod.RunAsync("ss", "-Hltn");
        Assert.True(!listeners.Stdout.Contains(":15001", StringComparison.Ordinal) && !listeners.Stdout.Contains(":15006", StringComparison.Ordinal),
            agent.Explain($"{pod.Name} still has the agent's listeners after 'workload remove':\n{listeners.Stdout}"));
    }
}
