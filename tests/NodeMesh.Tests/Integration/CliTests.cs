using System.Diagnostics;
using System.Text.Json;
using NodeMesh.Authz;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The CLI against real agents: <c>status</c> shows peers, tunnels, certificates and workloads after real traffic;
/// <c>flows</c> filters and follows; the socket is found from <c>NODEMESH_SOCKET</c> and from <c>--config</c>.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class CliTests(ITestOutputHelper output)
{
    private const int Port = 7400;

    [Fact]
    public async Task Status_AfterTraffic_ShowsPeersTunnelsCertificatesAndWorkloads()
    {
        // node3 is configured but has no agent: its peer entry must say why it cannot be reached.
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1), absent = mesh.Pod(3, 1);
        AgentProcess sender = await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult answered = await client.ProbeAsync(server.EndPoint(Port), "hello");
        Assert.True(answered is { Outcome: ProbeOutcome.Answered, Answer: "hello" }, mesh.Explain($"through the tunnel: {answered}"));
        ProbeResult unreachable = await client.ProbeAsync(absent.EndPoint(Port), "anyone?");
        Assert.NotEqual(ProbeOutcome.Answered, unreachable.Outcome);

        AgentStatus status = await sender.StatusAsync();
        output.WriteLine(JsonSerializer.Serialize(status, ApiJsonContext.Default.AgentStatus));
        Assert.Equal([mesh.Node(2).Name, mesh.Node(3).Name], status.Peers.Select(p => p.Node));
        PeerStatus toServer = status.Peers[0], toAbsent = status.Peers[1];
        Assert.True(toServer is { State: "connected", Connections: >= 1 }, sender.Explain($"node2: {toServer}"));
        Assert.Equal($"{mesh.Node(2).Ip}:{sender.Config.Ports.Tunnel}", toServer.Address);
        Assert.Equal(client.Identity, Assert.Single(toServer.Tunnels).SourceIdentity);
        Assert.True(toAbsent is { LastError: not null, Connections: 0, State: "failing" or "backoff" }, sender.Explain($"node3 has no agent: {toAbsent}"));
        Assert.Equal($"{mesh.Node(1).Ip}:{sender.Config.Ports.Tunnel}", status.Listener?.Address);
        Assert.Contains(status.Certificates, c => c.Kind == "node" && c.NotAfter > DateTimeOffset.UtcNow);
        Assert.Contains(status.Certificates, c => c.Kind == "workload" && c.Identity == client.Identity && c.NotAfter > DateTimeOffset.UtcNow);
        WorkloadInfo workload = Assert.Single(status.Workloads);
        Assert.Equal(client.Name, workload.Name);
        Assert.StartsWith("installed", workload.Capture, StringComparison.Ordinal);
        Assert.StartsWith("valid until", workload.Certificate, StringComparison.Ordinal);
        Assert.True(status.FlowsRecorded >= 2 && status.StartedAt < DateTimeOffset.UtcNow, sender.Explain($"flows recorded {status.FlowsRecorded}"));

        // The receiver holds the connection the sender dialled, under the client's identity.
        TunnelListenerStatus listener = (await receiver.StatusAsync()).Listener ?? throw new InvalidOperationException("no listener in status");
        Assert.Contains(listener.Accepted, c => c.PeerIdentity == client.Identity);

        CommandResult table = await sender.CliAsync("status");
        Assert.True(table.Succeeded, table.ToString());
        Assert.Contains("PEERS", table.Stdout, StringComparison.Ordinal);
        Assert.Matches($@"\n{mesh.Node(2).Name}\s+\S+\s+connected", table.Stdout);
        Assert.Matches(@"Z \(in \d+[dhm]", table.Stdout);
        CommandResult yaml = await sender.CliAsync("status", "-o", "yaml");
        Assert.True(yaml.Succeeded && yaml.Stdout.StartsWith($"node: {mesh.Node(1).Name}\n", StringComparison.Ordinal), yaml.ToString());
        Assert.Contains("\npeers:\n  - node: ", yaml.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Flows_FilterByDeniedAndWorkload_AndFollowPrintsANewFlow()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod denied = mesh.Pod(1, 1), allowed = mesh.Pod(1, 2), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess receiver = await mesh.StartAgentAsync(mesh.Node(2), s => s.Policies.Add(new PolicyConfig
        {
            Name = "deny-first",
            Action = "DENY",
            Selector = new SelectorConfig { Identities = [server.Identity] },
            Rules = [new RuleConfig { From = new SourceConfig { Principals = [denied.Identity] } }],
        }));
        await server.StartTcpServerAsync(Port, ServerMode.Echo);
        Assert.NotEqual(ProbeOutcome.Answered, (await denied.ProbeAsync(server.EndPoint(Port), "no")).Outcome);
        Assert.Equal(ProbeOutcome.Answered, (await allowed.ProbeAsync(server.EndPoint(Port), "yes")).Outcome);
        await receiver.WaitForFlowsAsync(f => f.Direction == "inbound", count: 2);

        FlowRecord deniedFlow = Assert.Single(await JsonFlowsAsync(receiver, "--denied"));
        Assert.Equal((FlowOutcome.Denied, denied.Identity, server.Identity), (deniedFlow.Outcome, deniedFlow.SourceIdentity, deniedFlow.DestinationIdentity));
        Assert.All(await JsonFlowsAsync(receiver, "--workload", allowed.Name), f => Assert.True(f.SourceWorkload == allowed.Name || f.DestinationWorkload == allowed.Name));
        Assert.Single(await JsonFlowsAsync(receiver, "--workload", allowed.Name));
        Assert.Equal(2, (await JsonFlowsAsync(receiver, "--since", "5m")).Count);

        // --follow: the flows so far, then a new one as it ends, until SIGTERM (exit 0).
        using var follow = Process.Start(new ProcessStartInfo(TestPaths.NodeMesh, ["flows", "--follow", "-o", "json", "--workload", allowed.Name, "--socket", receiver.SocketPath])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            string first = await follow.StandardOutput.ReadLineAsync(deadline.Token) ?? "";
            long seen = JsonSerializer.Deserialize(first, ApiJsonContext.Default.FlowRecord)!.Sequence;
            Assert.Equal(ProbeOutcome.Answered, (await allowed.ProbeAsync(server.EndPoint(Port), "again")).Outcome);
            string next = await follow.StandardOutput.ReadLineAsync(deadline.Token) ?? "";
            FlowRecord fresh = JsonSerializer.Deserialize(next, ApiJsonContext.Default.FlowRecord)!;
            Assert.True(fresh.Sequence > seen && fresh.SourceWorkload == allowed.Name, receiver.Explain($"followed: {next}"));

            await Command.RunCheckedAsync(TimeSpan.FromSeconds(5), "kill", "-TERM", follow.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await follow.WaitForExitAsync(deadline.Token);
            Assert.True(follow.ExitCode == 0, $"--follow after SIGTERM exited {follow.ExitCode}: {await follow.StandardError.ReadToEndAsync()}");
        }
        finally
        {
            if (!follow.HasExited)
            {
                follow.Kill();
            }
        }
    }

    [Fact]
    public async Task Socket_FromTheEnvironment_AndFromTheConfigFile()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1));

        CommandResult fromEnvironment = await Command.RunAsync("env", $"NODEMESH_SOCKET={agent.SocketPath}", TestPaths.NodeMesh, "workload", "list", "--json");
        Assert.True(fromEnvironment.Succeeded && fromEnvironment.Stdout.Contains(mesh.Pod(1, 1).Name, StringComparison.Ordinal), fromEnvironment.ToString());
        CommandResult fromConfig = await Command.RunAsync("env", "-u", "NODEMESH_SOCKET", TestPaths.NodeMesh, "workload", "list", "--config", agent.ConfigPath);
        Assert.True(fromConfig.Succeeded && fromConfig.Stdout.Contains(mesh.Pod(1, 1).Name, StringComparison.Ordinal), fromConfig.ToString());

        // A stale variable is named as the origin of the path.
        CommandResult stale = await Command.RunAsync("env", $"NODEMESH_SOCKET={agent.SocketPath}.old", TestPaths.NodeMesh, "status");
        Assert.True(stale.ExitCode == 1 && stale.Stderr.Contains("no such socket", StringComparison.Ordinal)
            && stale.Stderr.Contains("from $NODEMESH_SOCKET", StringComparison.Ordinal) && stale.Stderr.Contains("systemctl status nodemesh", StringComparison.Ordinal), stale.ToString());
    }

    private static async Task<List<FlowRecord>> JsonFlowsAsync(AgentProcess agent, params string[] filter)
    {
        CommandResult result = await agent.CliAsync(["flows", "-o", "json", .. filter]);
        Assert.True(result.Succeeded, agent.Explain(result.ToString()));
        return [.. result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonSerializer.Deserialize(l, ApiJsonContext.Default.FlowRecord)!)];
    }
}
