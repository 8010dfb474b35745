using NodeMesh.Config;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>An agent that cannot start as configured says why, exits, and leaves nothing open in plaintext.</summary>
[Collection(NetnsCollection.Name)]
public sealed class AgentStartupTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ExitTimeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Run_WithAWorkloadWhoseNamespaceIsMissing_ExitsNamingIt_AndCapturedPodsStayClosed()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        string ghostNetns = $"/var/run/netns/{mesh.Prefix}-ghost";
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s => s.ExtraWorkloads.Add(new WorkloadConfig
        {
            Name = "ghost",
            Ip = "10.240.1.99",
            Identity = $"spiffe://{Topology.TrustDomain}/ns/test/sa/ghost",
            Netns = ghostNetns,
        }));
        TcpTestServer external = await mesh.Ext.StartTcpServerAsync(9000, ServerMode.Echo);

        int exitCode = await agent.RunUntilExitAsync(ExitTimeout);

        Assert.True(exitCode != 0, agent.Explain($"the agent must refuse to run with an uncapturable workload; exit code {exitCode}"));
        Assert.True(agent.Output.Contains("ghost", StringComparison.Ordinal) && agent.Output.Contains(ghostNetns, StringComparison.Ordinal),
            agent.Explain("the error must name the workload and its namespace"));
        // n1p1 was captured before the failure: with no agent behind its rules it is closed (fail closed), the
        // same as while the agent is down for any other reason.
        ProbeResult probe = await mesh.Pod(1, 1).ProbeAsync(external.EndPoint, "after a failed start");
        Assert.True(probe.Outcome == ProbeOutcome.Refused, agent.Explain($"n1p1 after the failed start must be refused: {probe}"));
        Assert.Empty(external.Connections);
    }

    [Fact]
    public async Task SecondAgentOnTheSameNode_RefusesToStart_NamingTheBusyPort_AndTheFirstKeepsWorking()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(7000, ServerMode.Echo);
        AgentProcess second = mesh.CreateAgent(mesh.Node(1));

        Task<int> run = second.RunUntilExitAsync(ExitTimeout);
        await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(3)));
        // Who listens on the tunnel port while the second agent runs (two listeners would mean a shared port).
        CommandResult listeners = await mesh.Node(1).RunAsync("ss", "-Hltnp", "sport = :15008");
        int exitCode;
        try
        {
            exitCode = await run;
        }
        catch (TimeoutException ex)
        {
            throw new TimeoutException($"{ex.Message}\nlisteners on node1's tunnel port 3 s after the second agent started:\n{listeners.Stdout}", ex);
        }

        Assert.True(exitCode != 0, second.Explain($"a second agent on node1 must refuse to start; exit code {exitCode}"));
        Assert.True(second.Output.Contains("15008", StringComparison.Ordinal), second.Explain("the error must name the busy tunnel port"));
        Assert.True(mesh.Agent(1).IsRunning, mesh.Explain("the first agent died"));
        ProbeResult probe = await mesh.Pod(1, 1).ProbeAsync(echo.EndPoint, "still here");
        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "still here" }, mesh.Explain($"node1's pod after the second agent gave up: {probe}"));
    }
}
