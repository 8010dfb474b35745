using System.Net.Sockets;
using NodeMesh.Authz;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// L4 authorization enforced by the receiving agent on real namespaces: DENY beats ALLOW, an ALLOW list
/// denies everyone else, STRICT refuses plaintext while PERMISSIVE accepts it, a reload closes live flows the
/// new policy denies, and dry-run denies nothing but counts.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class AuthorizationTests(ITestOutputHelper output)
{
    private const int Port = 7100;

    private static PolicyConfig Policy(string name, string action, Pod? server = null, string[]? principals = null, int[]? ports = null, bool dryRun = false) => new()
    {
        Name = name,
        Action = action,
        DryRun = dryRun,
        Selector = server is null ? new SelectorConfig() : new SelectorConfig { Identities = [server.Identity] },
        Rules = [new RuleConfig
        {
            From = principals is null ? null : new SourceConfig { Principals = principals },
            To = ports is null ? null : new DestinationConfig { Ports = ports },
        }],
    };

    [Fact]
    public async Task Deny_BeatsAllow_CallerIsReset_AndTheDenialIsRecordedWithBothIdentities()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod denied = mesh.Pod(1, 1), allowed = mesh.Pod(1, 2), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2), s =>
        {
            s.Policies.Add(Policy("allow-both", "ALLOW", server, principals: [denied.Identity, allowed.Identity]));
            s.Policies.Add(Policy("deny-n1p1", "DENY", server, principals: [denied.Identity]));
        });
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult refused = await denied.ProbeAsync(server.EndPoint(Port), "let me in");
        Assert.True(refused.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"denied caller: {refused}"));
        ProbeResult answered = await allowed.ProbeAsync(server.EndPoint(Port), "hello");
        Assert.True(answered is { Outcome: ProbeOutcome.Answered, Answer: "hello" }, mesh.Explain($"allowed caller: {answered}"));

        FlowRecord record = (await receiver.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Result.StartsWith("refused: denied", StringComparison.Ordinal)))[0];
        Assert.Equal(denied.Identity, record.SourceIdentity);
        Assert.Equal(server.Identity, record.DestinationIdentity);
        Assert.Contains("deny-n1p1", record.Result, StringComparison.Ordinal);
        Assert.Contains("deny-n1p1", receiver.Output, StringComparison.Ordinal);
        Assert.Equal(1, (await receiver.StatusAsync()).FlowsDenied);
    }

    [Fact]
    public async Task AllowList_DeniesEveryoneElse_IncludingSameNodeCallers()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod remoteCaller = mesh.Pod(1, 1), server = mesh.Pod(2, 1), neighbour = mesh.Pod(2, 2);
        await mesh.StartAgentAsync(mesh.Node(1));
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Policies.Add(Policy("only-n1p1", "ALLOW", server, principals: [remoteCaller.Identity], ports: [Port])));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);
        await server.StartTcpServerAsync(Port + 1, ServerMode.Echo);

        Assert.Equal(ProbeOutcome.Answered, (await remoteCaller.ProbeAsync(server.EndPoint(Port), "ok")).Outcome);
        ProbeResult otherPort = await remoteCaller.ProbeAsync(server.EndPoint(Port + 1), "no");
        Assert.True(otherPort.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"port not in the rule: {otherPort}"));
        ProbeResult local = await neighbour.ProbeAsync(server.EndPoint(Port), "no");
        Assert.True(local.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"same-node caller not in the list: {local}"));
    }

    [Fact]
    public async Task ThreeNodes_AllowListOnOneNode_AdmitsOnlyTheListedCallerFromAnyNode()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod admitted = mesh.Pod(1, 1), server = mesh.Pod(2, 1), stranger = mesh.Pod(3, 1);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2), s => s.Policies.Add(Policy("only-n1p1", "ALLOW", server, principals: [admitted.Identity])));
        await mesh.StartAgentAsync(mesh.Node(3));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult fromNode1 = await admitted.ProbeAsync(server.EndPoint(Port), "n1");
        Assert.True(fromNode1 is { Outcome: ProbeOutcome.Answered, Answer: "n1" }, mesh.Explain($"listed caller on node1: {fromNode1}"));
        ProbeResult fromNode3 = await stranger.ProbeAsync(server.EndPoint(Port), "n3");
        Assert.True(fromNode3.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"unlisted caller on node3: {fromNode3}"));
        FlowRecord denial = (await receiver.WaitForFlowsAsync(f => f.Result.StartsWith("refused: denied", StringComparison.Ordinal)))[0];
        Assert.Equal(stranger.Identity, denial.SourceIdentity);
    }

    [Fact]
    public async Task Strict_RefusesPlaintextFromOutside_PermissiveAcceptsIt()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod strict = mesh.Pod(1, 1), permissive = mesh.Pod(1, 2);
        await mesh.StartAgentAsync(mesh.Node(1), s => s.Modes[strict.Name] = "STRICT");
        await strict.StartTcpServerAsync(Port, ServerMode.Echo);
        await permissive.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult refused = await mesh.Ext.ProbeAsync(strict.EndPoint(Port), "plaintext");
        Assert.True(refused.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"plaintext to STRICT: {refused}"));
        ProbeResult accepted = await mesh.Ext.ProbeAsync(permissive.EndPoint(Port), "plaintext");
        Assert.True(accepted is { Outcome: ProbeOutcome.Answered, Answer: "plaintext" }, mesh.Explain($"plaintext to PERMISSIVE: {accepted}"));
        // Mesh traffic still reaches the STRICT workload.
        Assert.Equal(ProbeOutcome.Answered, (await permissive.ProbeAsync(strict.EndPoint(Port), "mesh")).Outcome);
    }

    [Fact]
    public async Task PolicyReload_ClosesLiveFlowsItNowDenies_KeepsTheOthers_AndRefusesABadFile()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod victim = mesh.Pod(1, 1), survivor = mesh.Pod(1, 2), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        using Socket doomed = await victim.ConnectAsync(server.EndPoint(Port));
        using Socket kept = await survivor.ConnectAsync(server.EndPoint(Port));
        Assert.Equal("before", (await EchoOnceAsync(doomed, "before")));
        Assert.Equal("before", (await EchoOnceAsync(kept, "before")));

        // A file that does not validate is refused: the last good policies (none) stay in force.
        receiver.RewriteConfig(c => c.Policies = [Policy("Bad Name!", "DENY")]);
        await Task.Delay(1500);
        Assert.Equal("still", await EchoOnceAsync(doomed, "still"));
        Assert.Contains("reload", receiver.Output, StringComparison.OrdinalIgnoreCase);

        receiver.RewriteConfig(c => c.Policies = [Policy("cut-n1p1", "DENY", server, principals: [victim.Identity])]);
        StreamResult cut = await doomed.ReadToEndAsync(TimeSpan.FromSeconds(10));
        Assert.True(cut.End is not StreamEnd.CleanEof and not StreamEnd.TimedOut, mesh.Explain($"the denied live flow ended with {cut}"));
        Assert.Equal("after", await EchoOnceAsync(kept, "after"));
        ProbeResult again = await victim.ProbeAsync(server.EndPoint(Port), "again");
        Assert.True(again.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"new flow after the reload: {again}"));
    }

    [Fact]
    public async Task DryRun_DeniesNothing_ButCounts()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        Pod caller = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2), s => s.Policies.Add(Policy("would-deny", "DENY", server, principals: [caller.Identity], dryRun: true)));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        for (int i = 0; i < 3; i++)
        {
            ProbeResult result = await caller.ProbeAsync(server.EndPoint(Port), "dry");
            Assert.True(result is { Outcome: ProbeOutcome.Answered, Answer: "dry" }, mesh.Explain($"dry-run must not deny: {result}"));
        }

        AgentStatus status = await receiver.StatusAsync();
        Assert.Equal(0, status.FlowsDenied);
        Assert.Equal(3, status.FlowsDryRunDenied);
        Assert.Contains("would-deny", receiver.Output, StringComparison.Ordinal);
    }

    private static async Task<string> EchoOnceAsync(Socket socket, string text)
    {
        byte[] bytes = TestData.Ascii(text);
        await socket.SendAsync(bytes, SocketFlags.None);
        StreamResult answer = await socket.ReceiveExactlyAsync(bytes.Length, TimeSpan.FromSeconds(5));
        return answer.HeadText;
    }
}
