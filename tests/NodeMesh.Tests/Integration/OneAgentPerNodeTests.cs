using System.Diagnostics;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A second agent on a node (other ports, so nothing else stops it) may neither share the first one's state
/// directory nor take over a namespace the first one captures; the first keeps its rules and keeps serving.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class OneAgentPerNodeTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;
    private static readonly PortsConfig OtherPorts = new() { Outbound = 16001, InboundPlaintext = 16006, Tunnel = 16008, Metrics = 16020, Admin = 16000, Readiness = 16021 };

    [Fact]
    public async Task SecondAgent_WithTheSameStateDir_ExitsAtOnce_NamingTheHoldersPid()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess first = await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess second = mesh.CreateAgent(mesh.Node(1), s =>
        {
            s.LocalPods = [];
            s.Customize = c =>
            {
                c.StateDir = first.StateDir;
                c.Ports = OtherPorts;
            };
        });

        var watch = Stopwatch.StartNew();
        int exitCode = await second.RunUntilExitAsync(TimeSpan.FromSeconds(10));

        Assert.True(exitCode != 0, second.Explain($"a second agent on {first.StateDir} must refuse to run; exit code {exitCode}"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), second.Explain($"the refusal took {watch.Elapsed}"));
        Assert.True(second.Output.Contains($"another agent (pid {first.Pid})", StringComparison.Ordinal) && second.Output.Contains(first.StateDir, StringComparison.Ordinal),
            second.Explain("the refusal must name the running agent's pid and the state directory"));
        Assert.True(first.IsRunning, first.Explain("the first agent must go on running"));
        Assert.Equal(mesh.Pod(1, 1).Name, Assert.Single(await first.WorkloadListAsync()).Name);
    }

    [Fact]
    public async Task SecondAgent_WithItsOwnStateDir_IsRefusedTheFirstAgentsPod_AndLeavesItsRulesAlone()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        Pod pod = mesh.Pod(1, 1);
        AgentProcess first = await mesh.StartAgentAsync(mesh.Node(1));
        await mesh.StartAgentAsync(mesh.Node(2));
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        string rulesBefore = await pod.IptablesSaveAsync();
        Assert.Contains($"/pid={first.Pid}", rulesBefore, StringComparison.Ordinal);

        // At run time, through its API: refused with a clear error, nothing rewritten.
        AgentProcess second = mesh.CreateAgent(mesh.Node(1), s =>
        {
            s.LocalPods = [];
            s.Customize = c => c.Ports = OtherPorts;
        });
        await second.StartAsync();
        CommandResult add = await second.WorkloadAddAsync(pod);
        Assert.True(!add.Succeeded && add.Stderr.Contains("already captured by another agent", StringComparison.Ordinal)
            && add.Stderr.Contains($"pid {first.Pid}", StringComparison.Ordinal), mesh.Explain($"the second agent must be refused {pod.Name}: {add}"));
        Assert.Empty(await second.WorkloadListAsync());
        await second.StopAsync();

        // At start, from its configuration: it exits naming the owner.
        AgentProcess third = mesh.CreateAgent(mesh.Node(1), s =>
        {
            s.LocalPods = [pod];
            s.Customize = c => c.Ports = OtherPorts;
        });
        int exitCode = await third.RunUntilExitAsync(TimeSpan.FromSeconds(15));
        Assert.True(exitCode != 0 && third.Output.Contains("already captured by another agent", StringComparison.Ordinal),
            third.Explain($"an agent configured with another agent's pod must refuse to start; exit code {exitCode}"));

        string rulesAfter = await pod.IptablesSaveAsync();
        Assert.True(rulesAfter.Contains($"--to-ports {first.Config.Ports.Outbound}", StringComparison.Ordinal)
            && !rulesAfter.Contains($"--to-ports {OtherPorts.Outbound}", StringComparison.Ordinal)
            && rulesAfter.Contains($"/pid={first.Pid}", StringComparison.Ordinal),
            mesh.Explain($"{pod.Name}'s rules must still be the first agent's:\n{rulesAfter}"));

        // The first agent still lists and serves the pod: its connection goes through the tunnel.
        Assert.Equal(pod.Name, Assert.Single(await first.WorkloadListAsync()).Name);
        ProbeResult probe = await pod.ProbeAsync(echo.EndPoint, "still served", TimeSpan.FromSeconds(10));
        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "still served" }, mesh.Explain($"{pod.Name} after the other agents: {probe}"));
        IReadOnlyList<FlowRecord> flows = await mesh.Agent(2).WaitForFlowsAsync(
            f => f.Direction == "inbound" && f.Path == "tunnel" && f.Result == "ok" && f.SourceIdentity == pod.Identity);
        Assert.NotEmpty(flows);
        Assert.Contains(CaptureRules.NatChain, rulesAfter, StringComparison.Ordinal);
    }
}
