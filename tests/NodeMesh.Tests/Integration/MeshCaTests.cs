using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Three nodes with the mesh CA on node1: the others join with a join token and get every certificate by
/// signing request. A bad token keeps a node out, and a node cannot get a certificate for a workload the CA
/// places on another node.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class MeshCaTests(ITestOutputHelper output)
{
    private const int Port = 7200;
    internal const int CaPort = 15012;

    internal static Action<AgentSetup> CaServer(Topology mesh, string ttl = "24h") => s => s.Customize = c =>
        c.Ca = new CaConfig { Dir = mesh.CaDir, Role = "server", Listen = $"{mesh.Node(1).Ip}:{CaPort}", CertificateTtl = Contracts.Duration.Parse(ttl), NodeCertificateTtl = Contracts.Duration.Parse(ttl) };

    /// <summary>A join token for <paramref name="tokenFor"/>, written where <paramref name="node"/>'s agent reads it.</summary>
    internal static async Task<Action<AgentConfig>> JoinAsync(Topology mesh, Node node, string tokenFor, string ttl = "10m")
    {
        string tokenFile = Path.Combine(mesh.WorkDir, $"{node.Name}.token");
        CommandResult token = await Command.RunCheckedAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh,
            "ca", "token", "create", "--dir", mesh.CaDir, "--node", tokenFor, "--ttl", ttl);
        await File.WriteAllTextAsync(tokenFile, token.Stdout.Trim());
        return c =>
        {
            c.Certificates = new CertificatesConfig { Source = "ca" };
            c.Ca = new CaConfig
            {
                Dir = Path.Combine(mesh.WorkDir, "no-ca-on-" + node.Name),
                Server = $"{mesh.Node(1).Ip}:{CaPort}",
                TrustBundle = Path.Combine(mesh.CaDir, "ca.crt"),
                JoinTokenFile = tokenFile,
            };
        };
    }

    [Fact]
    public async Task NodesJoinWithTokens_AndTheirWorkloadsTalkAcrossNodes_WithCaIssuedIdentities()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        Action<AgentConfig> join2 = await JoinAsync(mesh, mesh.Node(2), "node2");
        Action<AgentConfig> join3 = await JoinAsync(mesh, mesh.Node(3), "node3");
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = join2);
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3), s => s.Customize = join3);
        await mesh.Pod(3, 1).StartTcpServerAsync(Port, ServerMode.Echo);
        await mesh.Pod(1, 1).StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult joined = await mesh.Pod(2, 1).ProbeAsync(mesh.Pod(3, 1).EndPoint(Port), "2->3");
        Assert.True(joined is { Outcome: ProbeOutcome.Answered, Answer: "2->3" }, mesh.Explain($"between two joined nodes: {joined}"));
        ProbeResult toCa = await mesh.Pod(3, 1).ProbeAsync(mesh.Pod(1, 1).EndPoint(Port), "3->1");
        Assert.True(toCa is { Outcome: ProbeOutcome.Answered, Answer: "3->1" }, mesh.Explain($"joined node to the CA's node: {toCa}"));

        FlowRecord inbound = (await node3.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Result == "ok"))[0];
        Assert.Equal(mesh.Pod(2, 1).Identity, inbound.SourceIdentity);
        Assert.Contains("(join) to node node2", ca.Output, StringComparison.Ordinal);
        Assert.Contains("(join) to node node3", ca.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheGatewaysIdentity_IsIssuedOnlyToTheNodesInGatewayNodes()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod web = mesh.Pod(3, 1);
        await NginxServer.StartAsync(web, "web", 80, keepalive: false); // each request a flow, recorded when it ends
        List<ServiceConfig> services = [Tests.Gateway.GatewayFixture.Service("web", 1, web)];
        Action<AgentSetup> ca = CaServer(mesh);
        await mesh.StartAgentAsync(mesh.Node(1), s =>
        {
            ca(s);
            Action<AgentConfig> server = s.Customize!;
            s.Customize = c =>
            {
                server(c);
                c.Ca.GatewayNodes = ["node2"];
            };
        });
        AgentProcess caAgent = mesh.Agent(1);
        Action<AgentConfig> WithGateway(Action<AgentConfig> join, Node node) => c =>
        {
            join(c);
            c.Services = services;
            c.Gateway = Tests.Gateway.GatewayFixture.Parse($$"""
                { "listeners": [ { "name": "web", "address": "{{node.Ip}}", "port": 8080 } ],
                  "httpRoutes": [ { "name": "all", "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ] } ] } ] }
                """);
        };
        Action<AgentConfig> join2 = await JoinAsync(mesh, mesh.Node(2), "node2"), join3 = await JoinAsync(mesh, mesh.Node(3), "node3");
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = WithGateway(join2, mesh.Node(2)));
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3), s => s.Customize = WithGateway(join3, mesh.Node(3)));

        // node2 may hold the gateway's identity: its gateway reaches web (on node3) through the tunnel under it.
        Tests.Gateway.HttpAnswer allowed = await Tests.Gateway.GatewayFixture.CurlAsync(mesh, $"http://{mesh.Node(2).Ip}:8080/");
        Assert.True(allowed is { Status: 200, ServedBy: "web" }, node2.Explain($"the gateway on a node in ca.gatewayNodes must work\n{allowed}"));
        FlowRecord inbound = (await node3.WaitForFlowsAsync(f => f.Direction == "inbound" && f.SourceIdentity == Tests.Gateway.GatewayFixture.GatewayIdentity))[0];
        Assert.True(inbound.Encrypted, node3.Explain("the gateway's flow must be encrypted"));

        // node3 may not: the CA refuses, and its gateway cannot send into the mesh.
        Tests.Gateway.HttpAnswer refused = await Tests.Gateway.GatewayFixture.CurlAsync(mesh, $"http://{mesh.Node(3).Ip}:8080/");
        Assert.True(refused.Status == 502, node3.Explain($"a gateway on a node not in ca.gatewayNodes must get no certificate\n{refused}"));
        Assert.True(await caAgent.WaitForOutputAsync("is the gateway's identity, and node node3 is not in ca.gatewayNodes"), caAgent.Explain("the CA must say why it refused"));
    }

    [Theory]
    [InlineData("node9", "10m", "join token is for another node")]
    [InlineData("node2", "1s", "expired")]
    public async Task BadJoinToken_KeepsTheNodeOut_WithTheCasReason(string tokenFor, string ttl, string reason)
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        Action<AgentConfig> badToken = await JoinAsync(mesh, mesh.Node(2), tokenFor, ttl);
        if (ttl == "1s")
        {
            await Task.Delay(TimeSpan.FromSeconds(2.5));
        }

        AgentProcess intruder = mesh.CreateAgent(mesh.Node(2), s => s.Customize = badToken);
        int exit = await intruder.RunUntilExitAsync(TimeSpan.FromSeconds(30));
        Assert.True(exit == 1, intruder.Explain($"exit code {exit}"));
        Assert.Contains(reason, intruder.Output, StringComparison.Ordinal);
        Assert.Contains("CA refused join", ca.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RestartAfterTheJoinTokenExpired_RenewsWithTheStoredNodeCertificate_AndServes()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        DateTime tokenMade = DateTime.UtcNow;
        Action<AgentConfig> join2 = await JoinAsync(mesh, mesh.Node(2), "node2", ttl: "8s");
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = join2);
        await mesh.Pod(1, 1).StartTcpServerAsync(Port, ServerMode.Echo);
        ProbeResult joined = await mesh.Pod(2, 1).ProbeAsync(mesh.Pod(1, 1).EndPoint(Port), "joined");
        Assert.True(joined is { Outcome: ProbeOutcome.Answered, Answer: "joined" }, mesh.Explain($"after joining: {joined}"));

        // The node key and certificate are kept, readable by the owner only.
        string stored = Path.Combine(node2.StateDir, NodeIdentityStore.DirectoryName, NodeIdentityStore.FileName);
        Assert.True(File.Exists(stored), node2.Explain($"no stored node certificate at {stored}"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(stored));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(stored)!));

        // Down until its token has expired, then started again with the same state directory and no new token.
        await node2.StopAsync();
        TimeSpan untilExpired = tokenMade.AddSeconds(9) - DateTime.UtcNow;
        if (untilExpired > TimeSpan.Zero)
        {
            await Task.Delay(untilExpired);
        }

        await node2.StartAsync();
        ProbeResult restarted = await mesh.Pod(2, 1).ProbeAsync(mesh.Pod(1, 1).EndPoint(Port), "restarted");
        Assert.True(restarted is { Outcome: ProbeOutcome.Answered, Answer: "restarted" }, mesh.Explain($"after a restart past the token's expiry: {restarted}"));
        Assert.True(node2.IsRunning, node2.Explain("node2 stopped after its restart"));
        string nodeIdentity = MeshIdentities.Node(Topology.TrustDomain, "node2").Uri;
        string renewal = $"CA issued {nodeIdentity} (certificate) to node node2";
        for (int i = 0; i < 50 && !ca.Output.Contains(renewal, StringComparison.Ordinal); i++)
        {
            await Task.Delay(200);
        }

        Assert.True(ca.Output.Contains(renewal, StringComparison.Ordinal), ca.Explain("the restarted node did not renew with its stored certificate"));
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(ca.Output, "\\(join\\) to node node2"));
        Assert.DoesNotContain("CA refused join", ca.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UsedJoinToken_IsRefused_AlsoAfterTheCaRestarts()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        Action<AgentConfig> join2 = await JoinAsync(mesh, mesh.Node(2), "node2");
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = join2);
        await node2.StopAsync();

        // Someone else (or the same node with its state wiped) presents the token again, to a restarted CA.
        Directory.Delete(Path.Combine(node2.StateDir, NodeIdentityStore.DirectoryName), recursive: true);
        await ca.RestartAsync();
        int exit = await node2.RunUntilExitAsync(TimeSpan.FromSeconds(30));

        Assert.True(exit == 1, node2.Explain($"exit code {exit}"));
        Assert.Contains("was already used", node2.Output, StringComparison.Ordinal);
        Assert.Contains("nodemesh ca token create", node2.Output, StringComparison.Ordinal);
        Assert.Contains("CA refused join", ca.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", node2.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TrustBundleOverlap_NodesOnTheOldAndTheNewRootTalk_WhileBothAreTrusted()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        string newCa = await mesh.CreateCaAsync("new-root");
        // During a root rotation each side trusts both roots.
        using (var oldRoot = CertificateAuthority.Load(mesh.CaDir))
        using (var newRoot = CertificateAuthority.Load(newCa))
        {
            CertificateAuthority.WriteAdditionalRoots(mesh.CaDir, [newRoot.Root]);
            CertificateAuthority.WriteAdditionalRoots(newCa, [oldRoot.Root]);
        }

        await mesh.StartAgentAsync(mesh.Node(1));
        await mesh.StartAgentAsync(mesh.Node(2), s => s.CaDir = newCa);
        await mesh.Pod(1, 1).StartTcpServerAsync(Port, ServerMode.Echo);
        await mesh.Pod(2, 1).StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult oldToNew = await mesh.Pod(1, 1).ProbeAsync(mesh.Pod(2, 1).EndPoint(Port), "old->new");
        ProbeResult newToOld = await mesh.Pod(2, 1).ProbeAsync(mesh.Pod(1, 1).EndPoint(Port), "new->old");
        Assert.True(oldToNew is { Outcome: ProbeOutcome.Answered, Answer: "old->new" }, mesh.Explain($"old root -> new root: {oldToNew}"));
        Assert.True(newToOld is { Outcome: ProbeOutcome.Answered, Answer: "new->old" }, mesh.Explain($"new root -> old root: {newToOld}"));
    }

    [Fact]
    public async Task TrustBundleUpdatedLive_AddingTheOtherRoot_LetsNodesTalk_WithoutARestart()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        string newCa = await mesh.CreateCaAsync("next-root");
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.CaDir = newCa);
        await mesh.Pod(2, 1).StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult before = await mesh.Pod(1, 1).ProbeAsync(mesh.Pod(2, 1).EndPoint(Port), "before", TimeSpan.FromSeconds(10));
        Assert.True(before.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"two roots, no overlap yet: {before}"));

        using (var oldRoot = CertificateAuthority.Load(mesh.CaDir))
        using (var nextRoot = CertificateAuthority.Load(newCa))
        {
            CertificateAuthority.WriteAdditionalRoots(mesh.CaDir, [nextRoot.Root]);
            CertificateAuthority.WriteAdditionalRoots(newCa, [oldRoot.Root]);
        }

        ProbeResult after = before;
        for (int attempt = 0; attempt < 20 && after.Outcome != ProbeOutcome.Answered; attempt++)
        {
            await Task.Delay(500);
            after = await mesh.Pod(1, 1).ProbeAsync(mesh.Pod(2, 1).EndPoint(Port), "after", TimeSpan.FromSeconds(5));
        }

        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "after" }, mesh.Explain($"after both roots were trusted: {after}"));
        Assert.True(node1.IsRunning && node2.IsRunning, mesh.Explain("an agent restarted or stopped"));
        Assert.Contains("trust bundle reloaded", node2.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NodeCannotObtainACertificate_ForAWorkloadPlacedOnAnotherNode()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod victim = mesh.Pod(2, 1), impostor = mesh.Pod(3, 1), server = mesh.Pod(1, 1);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        Action<AgentConfig> join3 = await JoinAsync(mesh, mesh.Node(3), "node3");
        // node3 claims that its pod runs as node2's workload.
        await mesh.StartAgentAsync(mesh.Node(3), s => s.Customize = c =>
        {
            join3(c);
            c.Workloads = [c.Workloads[0] with { Identity = victim.Identity }];
        });
        await server.StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult stolen = await impostor.ProbeAsync(server.EndPoint(Port), "as n2p1");
        Assert.True(stolen.Outcome is ProbeOutcome.Reset or ProbeOutcome.Refused, mesh.Explain($"flow under a borrowed identity: {stolen}"));
        // The flow fails as soon as node3 has no certificate; the CA's refusal of node3's request may come a moment later.
        string refusal = $"CA refused certificate for {victim.Identity} from node node3";
        await ca.WaitForOutputAsync(refusal);
        Assert.Contains(refusal, ca.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AWorkloadsCertificate_IsSoughtWhenItIsRegistered_AndARefusalShowsInStatus_BeforeAnyFlow()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 3, podsPerNode: 1, output);
        Pod victim = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh));
        Action<AgentConfig> join3 = await JoinAsync(mesh, mesh.Node(3), "node3");
        AgentProcess node3 = await mesh.StartAgentAsync(mesh.Node(3), s => s.Customize = c =>
        {
            join3(c);
            c.Workloads = [c.Workloads[0] with { Identity = victim.Identity }];
        });

        // No flow has been made: the agent asked for the certificate when the workload was registered.
        CertificateInfo? held = null;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(15))
        {
            held = (await node3.StatusAsync()).Certificates.FirstOrDefault(c => c.Identity == victim.Identity);
            if (held?.Error is not null)
            {
                break;
            }

            await Task.Delay(200);
        }

        Assert.True(held is { NotAfter: null } && held.Error!.Contains("refused", StringComparison.OrdinalIgnoreCase),
            node3.Explain($"status for {victim.Identity}: {held}"));
        WorkloadInfo listed = Assert.Single(await node3.WorkloadListAsync());
        Assert.StartsWith("unavailable: ", listed.Certificate, StringComparison.Ordinal);
        Assert.Contains((await node3.StatusAsync()).Certificates, c => c.Identity.Contains("node.node3", StringComparison.Ordinal) && c.NotAfter > DateTimeOffset.UtcNow);
        Assert.Empty(await node3.FlowsAsync());
    }

    [Fact]
    public async Task CertificatesRotatingEveryFewSeconds_UnderAContinuousTransfer_LoseNoByte()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        Pod client = mesh.Pod(2, 1), server = mesh.Pod(1, 1);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), CaServer(mesh, ttl: "6s"));
        Action<AgentConfig> join2 = await JoinAsync(mesh, mesh.Node(2), "node2");
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = join2);
        await server.StartTcpServerAsync(Port, ServerMode.Sink);
        await server.StartTcpServerAsync(Port + 1, ServerMode.Echo);

        // About 10 s of traffic on one flow while the 6 s certificates renew at about half-life.
        using System.Net.Sockets.Socket socket = await client.ConnectAsync(server.EndPoint(Port));
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        long sent = 0;
        for (int i = 0; i < 40; i++)
        {
            byte[] chunk = System.Security.Cryptography.RandomNumberGenerator.GetBytes(256 * 1024);
            StreamResult part = await socket.SendAllAsync(chunk, TimeSpan.FromSeconds(10), shutdownAfter: false);
            Assert.True(part.End == StreamEnd.CleanEof, mesh.Explain($"sending chunk {i}: {part}"));
            hash.AppendData(chunk);
            sent += chunk.Length;
            await Task.Delay(250);
        }

        socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        StreamResult answer = await socket.ReadToEndAsync(TimeSpan.FromSeconds(20));
        string expected = $"{sent} {Convert.ToHexStringLower(hash.GetHashAndReset())}";
        Assert.True(answer.HeadText.Trim() == expected, mesh.Explain($"server received '{answer.HeadText.Trim()}', sent '{expected}' ({answer})"));

        // New flows use renewed certificates.
        ProbeResult fresh = await client.ProbeAsync(server.EndPoint(Port + 1), "after rotation");
        Assert.True(fresh is { Outcome: ProbeOutcome.Answered, Answer: "after rotation" }, mesh.Explain($"new flow after rotation: {fresh}"));
        int issued = System.Text.RegularExpressions.Regex.Count(ca.Output, $"CA issued {System.Text.RegularExpressions.Regex.Escape(client.Identity)} \\(certificate\\)");
        Assert.True(issued >= 2, ca.Explain($"the CA issued {client.Identity} {issued} time(s); renewal expected during the transfer"));
    }
}
