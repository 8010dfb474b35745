using System.Net;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A captured workload has only an IPv4 mesh address, so its IPv6 TCP is refused both ways on every interface but
/// lo, over ULA and link-local addresses alike, whatever the application binds to; nothing of it crosses a link in
/// plaintext, also while the agent is down. IPv4 mesh traffic of the same pods keeps flowing.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class Ipv6CaptureTests(ITestOutputHelper output)
{
    private const int Port = 7200;
    private static readonly TimeSpan FailFast = TimeSpan.FromSeconds(3);

    /// <summary>An ALLOW policy without rules: nothing may reach the workload.</summary>
    private static PolicyConfig DenyAll(Pod server) => new()
    {
        Name = "deny-all",
        Action = "ALLOW",
        Selector = new SelectorConfig { Identities = [server.Identity] },
        Rules = [],
    };

    [Fact]
    public async Task Inbound_Ipv6ToStrictPod_IsReset_OverUlaAndLinkLocal_AlsoWhileTheAgentIsDown()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        await mesh.AddIpv6Async();
        Pod server = mesh.Pod(1, 1), neighbour = mesh.Pod(1, 2);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s =>
        {
            s.LocalPods = [server];
            s.Modes[server.Name] = "STRICT";
            s.Policies.Add(DenyAll(server));
        });
        TcpTestServer app = await server.StartTcpServerAsync(Port, ServerMode.Echo, IPAddress.IPv6Any);
        IPAddress linkLocal = await server.LinkLocalAsync("eth0");
        var callers = new (NetnsHost Client, IPEndPoint Target, string What)[]
        {
            (mesh.Ext, server.Ipv6EndPoint(Port), "ULA from the external host"),
            (neighbour, new IPEndPoint(await neighbour.ScopedAsync(linkLocal, "eth0"), Port), "link-local from a pod on the same bridge"),
            (mesh.Node(1), new IPEndPoint(await mesh.Node(1).ScopedAsync(linkLocal, "pods0"), Port), "link-local from the node"),
        };

        await AssertAllResetAsync(mesh, server, callers, "with the agent running");

        // The refusal is kernel rules with no listener behind them: it holds while the agent is down...
        await agent.KillAsync();
        await AssertAllResetAsync(mesh, server, callers, "with the agent killed");

        // ...and a new agent installs it again without a second jump.
        await agent.StartAsync();
        string rules = await server.Ip6tablesSaveAsync();
        Assert.True(rules.Split('\n').Count(l => l == $"-A INPUT -j {Ipv6Rules.InputChain}") == 1
            && rules.Split('\n').Count(l => l == $"-A OUTPUT -j {Ipv6Rules.OutputChain}") == 1,
            agent.Explain($"after a restart each IPv6 jump must be there exactly once:\n{rules}"));
        await AssertAllResetAsync(mesh, server, callers, "after the agent restarted");
        Assert.True(app.Connections.Count == 0, agent.Explain($"the [::] server accepted {app.Connections.Count} IPv6 connection(s)"));
    }

    [Fact]
    public async Task Outbound_Ipv6FromCapturedPod_IsReset_OverUlaAndLinkLocal_WhileIpv4MeshTrafficFlows()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.AddIpv6Async();
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1), meshServer = mesh.Pod(2, 1);
        TcpTestServer outside = await mesh.Ext.StartTcpServerAsync(Port, ServerMode.Echo, IPAddress.IPv6Any);
        TcpTestServer onNode = await mesh.Node(1).StartTcpServerAsync(Port, ServerMode.Echo, IPAddress.IPv6Any);
        TcpTestServer inMesh = await meshServer.StartTcpServerAsync(Port, ServerMode.Echo, IPAddress.IPv6Any);
        IPAddress nodeLinkLocal = await mesh.Node(1).LinkLocalAsync("pods0");
        var targets = new (NetnsHost Client, IPEndPoint Target, string What)[]
        {
            (client, mesh.Ext.Ipv6EndPoint(Port), "ULA of the external host"),
            (client, meshServer.Ipv6EndPoint(Port), "ULA of a mesh pod on the other node"),
            (client, new IPEndPoint(await client.ScopedAsync(nodeLinkLocal, "eth0"), Port), "link-local of the node"),
        };
        LinkCapture lan = await mesh.CaptureAsync(mesh.Node(1));

        await AssertAllResetAsync(mesh, client, targets, "from a captured pod");

        // The same pod's IPv4 (also from an IPv6 socket, as ::ffff:a.b.c.d) still goes through the tunnel.
        string marker = TestData.Marker("v4");
        IPEndPoint v4 = inMesh.EndPoint;
        foreach (IPEndPoint destination in new[] { v4, new IPEndPoint(v4.Address.MapToIPv6(), v4.Port) })
        {
            ProbeResult probe = await client.ProbeAsync(destination, marker, TimeSpan.FromSeconds(10));
            Assert.True(probe.Outcome == ProbeOutcome.Answered && probe.Answer == marker, mesh.Explain($"IPv4 mesh traffic to {destination}: {probe}"));
        }

        CapturedTraffic wire = await lan.StopAsync();
        Assert.False(wire.Contains(marker), mesh.Explain($"IPv4 mesh traffic crossed the lan in plaintext ({wire})"));
        IReadOnlyList<FlowRecord> tunnelled = await mesh.Agent(2).WaitForFlowsAsync(
            f => f.Direction == "inbound" && f.Path == "tunnel" && f.Result == "ok" && f.SourceIdentity == client.Identity && f.Destination == v4.ToString(), count: 2);
        Assert.True(tunnelled.Count == 2, mesh.Explain($"expected 2 tunnelled IPv4 flows from {client.Name}, node2 has {tunnelled.Count}"));
        Assert.True(outside.Connections.Count == 0 && onNode.Connections.Count == 0, mesh.Explain("an IPv6 server outside the pod accepted a connection from it"));
        Assert.All(inMesh.Connections, c => Assert.True(c.RemoteEndPoint.Address.IsIPv4MappedToIPv6, $"the mesh server accepted {c.RemoteEndPoint} over IPv6"));
    }

    [Fact]
    public async Task WorkloadRemoval_TakesTheIpv6Refusal_AndIpv6WorksAgain()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        await mesh.AddIpv6Async();
        Pod pod = mesh.Pod(1, 1);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1));
        await pod.StartTcpServerAsync(Port, ServerMode.Echo, IPAddress.IPv6Any);
        Assert.Contains(Ipv6Rules.InputChain, await pod.Ip6tablesSaveAsync(), StringComparison.Ordinal);
        ProbeResult captured = await mesh.Ext.ProbeAsync(pod.Ipv6EndPoint(Port), "captured", FailFast);
        Assert.True(captured.Outcome == ProbeOutcome.Refused, agent.Explain($"IPv6 to a captured pod: {captured}"));

        CommandResult remove = await agent.WorkloadRemoveAsync(pod);
        Assert.True(remove.Succeeded, agent.Explain(remove.ToString()));

        string rules = await pod.Ip6tablesSaveAsync();
        Assert.False(rules.Contains("NODEMESH", StringComparison.Ordinal), agent.Explain($"{pod.Name} still has NodeMesh ip6tables rules after 'workload remove':\n{rules}"));
        ProbeResult released = await mesh.Ext.ProbeAsync(pod.Ipv6EndPoint(Port), "released", FailFast);
        Assert.True(released is { Outcome: ProbeOutcome.Answered, Answer: "released" }, agent.Explain($"IPv6 to the released pod: {released}"));
    }

    [Fact]
    public async Task Ipv6Off_InOnePodsNamespace_NothingToRefuseThere_WhileTheOtherPodIsRefused()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod off = mesh.Pod(1, 1), on = mesh.Pod(1, 2);
        CommandResult disable = await off.RunAsync("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1");
        Assert.True(disable.Succeeded, disable.ToString());

        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1));

        // The agent looks at each workload's own namespace, not at its own (where IPv6 is on).
        Assert.False((await off.Ip6tablesSaveAsync()).Contains("NODEMESH", StringComparison.Ordinal), agent.Explain($"{off.Name} has IPv6 off, yet got IPv6 rules"));
        Assert.Contains(CaptureRules.NatChain, await off.IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.Contains(Ipv6Rules.InputChain, await on.Ip6tablesSaveAsync(), StringComparison.Ordinal);
        Assert.Contains($"workload {off.Name}: IPv6 TCP off in the namespace", agent.Output, StringComparison.Ordinal);
        Assert.Contains($"workload {on.Name}: IPv6 TCP refused", agent.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ip6tablesMissing_WithIpv6On_AgentRefusesToCapture_WithAClearError_ButStartsWhereIpv6IsOff()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        Pod pod = mesh.Pod(1, 1);
        // A PATH with everything the agent runs except ip6tables.
        string bin = Path.Combine(mesh.WorkDir, "bin-without-ip6tables");
        Directory.CreateDirectory(bin);
        foreach (string tool in new[] { "nsenter", "ip", "iptables", "iptables-save", "iptables-restore" })
        {
            string? found = new[] { "/usr/sbin", "/usr/bin", "/sbin", "/bin" }.Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);
            File.CreateSymbolicLink(Path.Combine(bin, tool), found ?? throw new InvalidOperationException($"{tool} is not installed"));
        }

        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s => s.SearchPath = bin);
        int exitCode = await agent.RunUntilExitAsync(TimeSpan.FromSeconds(30));

        Assert.True(exitCode != 0, agent.Explain($"with IPv6 on and no ip6tables the agent must not capture {pod.Name}; exit code {exitCode}"));
        Assert.True(agent.Output.Contains("IPv6 is enabled in " + pod.NetnsPath, StringComparison.Ordinal)
            && agent.Output.Contains("ip6tables-restore", StringComparison.Ordinal), agent.Explain("the error must name the namespace and the missing tool"));
        Assert.DoesNotContain("   at ", agent.Output, StringComparison.Ordinal);
        Assert.False((await pod.IptablesSaveAsync()).Contains("NODEMESH", StringComparison.Ordinal), agent.Explain("nothing may be half-installed"));

        CommandResult disable = await pod.RunAsync("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1");
        Assert.True(disable.Succeeded, disable.ToString());
        await agent.StartAsync();
        Assert.Contains(CaptureRules.NatChain, await pod.IptablesSaveAsync(), StringComparison.Ordinal);
    }

    /// <summary>Each caller's connect is refused (a reset, not a hang), and its marker is never on the pod's link.</summary>
    private static async Task AssertAllResetAsync(Topology mesh, Pod pod, (NetnsHost Client, IPEndPoint Target, string What)[] calls, string when)
    {
        LinkCapture link = await mesh.CaptureAsync(pod.Node, "vp" + pod.Index.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var results = new List<string>();
        var markers = new List<string>();
        foreach (var (client, target, what) in calls)
        {
            string marker = TestData.Marker("v6");
            markers.Add(marker);
            ProbeResult probe = await client.ProbeAsync(target, marker, FailFast);
            if (probe.Outcome != ProbeOutcome.Refused)
            {
                results.Add($"{what} ({client.Name} -> {target}): {probe}");
            }
        }

        CapturedTraffic wire = await link.StopAsync();
        Assert.True(results.Count == 0, mesh.Explain($"{when}, IPv6 TCP must be refused with a reset:\n{string.Join("\n", results)}"));
        Assert.False(markers.Any(wire.Contains), mesh.Explain($"{when}, an IPv6 marker crossed {pod.Name}'s link in plaintext ({wire})"));
        Assert.DoesNotContain(wire.Segments, s => s.Source.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 && s.Payload.Length > 0);
    }
}
