using System.Net;
using k8s.Models;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Integration;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Kubernetes.KubernetesTestObjects;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>
/// Agents on real namespaces that learn the mesh from an API server (the test's, in the ext namespace, speaking the
/// real list and watch protocol): pods become remote workloads named <c>pod.namespace</c> under their service
/// account's identity, Services with ready EndpointSlice pods become balanced service addresses, Nodes' InternalIPs
/// become tunnel peers. Pods are registered on their own node with <c>nodemesh workload add</c> (what the CNI shim
/// will do), under the same name and identity.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class KubernetesDiscoveryTests(ITestOutputHelper output)
{
    internal const string Namespace = "test";
    private static readonly IPNetwork PodRange = IPNetwork.Parse("10.240.0.0/16");
    private static readonly IPEndPoint Vip = IPEndPoint.Parse("10.96.0.20:80");

    internal static async Task<FakeApiServer> StartApiServerAsync(Topology mesh)
    {
        FakeApiServer server = await FakeApiServer.StartAsync(new IPEndPoint(mesh.Ext.Ip, 6443), ep => mesh.Ext.InNamespaceAsync(() => FakeApiServer.Bind(ep)));
        foreach (Node node in mesh.Nodes)
        {
            server.Apply(Node(node.Name, node.Ip.ToString()));
        }

        return server;
    }

    internal static V1Pod PodOf(Pod pod, string phase = "Running") =>
        Pod(Namespace, pod.Name, pod.Node.Name, phase == "Running" ? pod.Ip.ToString() : null, serviceAccount: pod.Name, phase: phase);

    private static string WorkloadName(Pod pod) => $"{pod.Name}.{Namespace}";

    /// <summary>discovery.source kubernetes through a kubeconfig for <paramref name="server"/>; no pod in the config file.</summary>
    internal static Action<AgentSetup> OnKubernetes(Topology mesh, FakeApiServer server, Action<AgentConfig>? more = null) => setup =>
    {
        setup.LocalPods = [];
        setup.RemotePods = [];
        string kubeconfig = KubeconfigFile.Write(Path.Combine(mesh.WorkDir, "kube"), server.Url, server.Token);
        setup.Customize = config =>
        {
            more?.Invoke(config);
            config.Nodes = [];
            config.RemoteWorkloads = [];
            config.Discovery = new DiscoveryConfig
            {
                Source = DiscoverySource.Kubernetes,
                Kubernetes = new KubernetesConfig
                {
                    Kubeconfig = kubeconfig, RequestTimeout = TimeSpan.FromSeconds(2),
                    InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromSeconds(1),
                },
            };
            config.Mesh = new MeshConfig { Cidrs = [PodRange], HoldTimeout = TimeSpan.FromSeconds(1) };
        };
    };

    /// <summary><c>nodemesh workload add</c> as the CNI shim will call it: the pod's registry name and its service account's identity.</summary>
    internal static async Task AddPodAsync(AgentProcess agent, Pod pod)
    {
        // A pod the API server lists on the node before the agent starts is captured by the start-up reconcile.
        Assert.True(await agent.WaitForOutputAsync("pods reconciled with the API server", TimeSpan.FromSeconds(10)), agent.Explain("no start-up reconcile"));
        if ((await agent.WorkloadListAsync()).FirstOrDefault(w => w.Name == WorkloadName(pod)) is { } adopted)
        {
            Assert.Equal((pod.Identity, pod.NetnsPath), (adopted.Identity, adopted.Netns));
            return;
        }

        CommandResult added = await agent.CliAsync("workload", "add", "--name", WorkloadName(pod), "--ip", pod.Ip.ToString(), "--identity", pod.Identity, "--netns", pod.NetnsPath);
        Assert.True(added.Succeeded, agent.Explain($"workload add {WorkloadName(pod)}: {added}"));
    }

    [Fact]
    public async Task PodsAndServicesFromTheApiServer_AreReachedEncryptedAcrossNodes_AndGoneWhenDeleted()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await using FakeApiServer api = await StartApiServerAsync(mesh);
        Pod client = mesh.Pod(1, 1), ready = mesh.Pod(2, 1), notReady = mesh.Pod(2, 2);
        foreach (Pod pod in new[] { client, ready, notReady })
        {
            api.Apply(PodOf(pod));
        }

        api.Apply(Service(Namespace, "echo", Vip.Address.ToString(), ("http", Vip.Port, "http")));
        api.Apply(Slice(Namespace, "echo-1", "echo", [("http", 8080)], (ready.Name, ready.Ip.ToString(), true), (notReady.Name, notReady.Ip.ToString(), false)));

        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), OnKubernetes(mesh, api));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), OnKubernetes(mesh, api));
        await AddPodAsync(node1, client);
        await AddPodAsync(node2, ready);
        await AddPodAsync(node2, notReady);
        TcpTestServer echo = await ready.StartTcpServerAsync(8080, ServerMode.Echo);
        TcpTestServer other = await notReady.StartTcpServerAsync(8080, ServerMode.Echo);
        await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r is { Source: "kubernetes", State: "synced", Nodes: 1, RemoteWorkloads: 2 }, TimeSpan.FromSeconds(10), "node2 and its two pods");
        await EtcdDiscoveryTests.WaitForRegistryAsync(node2, r => r is { State: "synced", Nodes: 1, RemoteWorkloads: 1 }, TimeSpan.FromSeconds(10), "node1 and its pod");

        LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
        string direct = TestData.Marker("direct");
        ProbeResult reached = await client.ProbeAsync(echo.EndPoint, direct, TimeSpan.FromSeconds(5));
        Assert.True(reached is { Outcome: ProbeOutcome.Answered } && reached.Answer == direct, mesh.Explain($"pod to pod across nodes: {reached}"));
        await node1.WaitForFlowsAsync(f => f.Destination == echo.EndPoint.ToString() && f.Encrypted && f.Path == "tunnel" && f.DestinationIdentity == ready.Identity);
        FlowRecord inbound = (await node2.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Destination == echo.EndPoint.ToString()))[0];
        Assert.Equal(client.Identity, inbound.SourceIdentity);

        // The service's cluster IP: only the ready endpoint gets flows, each carried encrypted.
        string[] viaService = [.. Enumerable.Range(0, 6).Select(i => TestData.Marker($"svc{i}"))];
        foreach (string marker in viaService)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, marker, TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered } && probe.Answer == marker, mesh.Explain($"to the service's cluster IP: {probe}"));
        }

        List<FlowRecord> served = [.. (await node2.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Result == "ok", count: 7)).Where(f => f.Direction == "inbound" && f.Result == "ok")];
        Assert.True(served.All(f => f.DestinationWorkload == WorkloadName(ready)), mesh.Explain($"flows to the service reached: {string.Join(", ", served.Select(f => f.DestinationWorkload))}"));
        Assert.All((await node1.FlowsAsync()).Where(f => f.Destination == Vip.ToString()), f => Assert.True(f.Encrypted && f.Path == "tunnel", AgentProcess.Describe(f)));

        CapturedTraffic wire = await link.StopAsync();
        Assert.All(viaService.Append(direct), marker => Assert.False(wire.Contains(marker), $"'{marker}' crossed node1's link in plaintext ({wire})"));
        Assert.Empty(wire.PayloadBetween("10.240."));

        // The endpoint turns ready: flows spread to it too.
        api.Apply(Slice(Namespace, "echo-1", "echo", [("http", 8080)], (ready.Name, ready.Ip.ToString(), true), (notReady.Name, notReady.Ip.ToString(), true)));
        bool spread = false;
        for (int i = 0; i < 30 && !spread; i++)
        {
            ProbeResult probe = await client.ProbeAsync(Vip, $"spread {i}", TimeSpan.FromSeconds(5));
            Assert.True(probe is { Outcome: ProbeOutcome.Answered }, mesh.Explain($"to the service after the second endpoint turned ready: {probe}"));
            spread = (await node2.FlowsAsync()).Any(f => f.Direction == "inbound" && f.DestinationWorkload == WorkloadName(notReady));
        }

        Assert.True(spread, mesh.Explain("no flow went to the endpoint that turned ready"));

        // Deleted from the API server: node1 forgets it, and its address (in mesh.cidrs) is refused, never passed through.
        api.Delete<V1Pod>(Namespace, ready.Name);
        await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r.RemoteWorkloads == 1, TimeSpan.FromSeconds(5), "the deleted pod gone");
        ProbeResult gone = await client.ProbeAsync(echo.EndPoint, "deleted", TimeSpan.FromSeconds(5));
        Assert.True(gone.Outcome != ProbeOutcome.Answered, mesh.Explain($"a deleted pod's address was reached: {gone}"));
        await node1.WaitForFlowsAsync(f => f.Destination == echo.EndPoint.ToString() && f.Result.Contains("not in the registry", StringComparison.Ordinal));
        Assert.NotNull(other);
    }

    [Fact]
    public async Task ApiServerDown_TheAgentsKeepTheirRegistry_AndCatchUpWhenItIsBack_ReListingAfter410()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await using FakeApiServer api = await StartApiServerAsync(mesh);
        Pod client = mesh.Pod(1, 1), first = mesh.Pod(2, 1), second = mesh.Pod(2, 2);
        api.Apply(PodOf(client));
        api.Apply(PodOf(first));
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), OnKubernetes(mesh, api));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), OnKubernetes(mesh, api));
        await AddPodAsync(node1, client);
        await AddPodAsync(node2, first);
        await AddPodAsync(node2, second);
        TcpTestServer one = await first.StartTcpServerAsync(8080, ServerMode.Echo);
        TcpTestServer two = await second.StartTcpServerAsync(8080, ServerMode.Echo);
        await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r is { State: "synced", RemoteWorkloads: 1 }, TimeSpan.FromSeconds(10), "node2's first pod");

        await api.StopAsync();
        RegistryStatus down = await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r.State == "disconnected", TimeSpan.FromSeconds(10), "the outage noticed");
        Assert.NotNull(down.LastError);
        ProbeResult during = await client.ProbeAsync(one.EndPoint, "during", TimeSpan.FromSeconds(5));
        Assert.True(during is { Outcome: ProbeOutcome.Answered, Answer: "during" }, mesh.Explain($"while the API server was down: {during}"));

        // Meanwhile the second pod starts, and the history the agents would resume from is compacted away.
        api.Apply(PodOf(second, phase: "Pending"));
        api.Apply(PodOf(second));
        api.Compact();
        ProbeResult unknown = await client.ProbeAsync(two.EndPoint, "unknown", TimeSpan.FromSeconds(5));
        Assert.True(unknown.Outcome != ProbeOutcome.Answered, mesh.Explain($"a pod the registry does not know yet was reached: {unknown}"));

        await api.StartAsync();
        await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r is { State: "synced", RemoteWorkloads: 2 }, TimeSpan.FromSeconds(15), "the catch-up after the outage");
        ProbeResult after = await client.ProbeAsync(two.EndPoint, "after", TimeSpan.FromSeconds(5));
        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "after" }, mesh.Explain($"after the API server came back: {after}"));
        await node1.WaitForFlowsAsync(f => f.Destination == two.EndPoint.ToString() && f.Encrypted && f.DestinationIdentity == second.Identity);
        Assert.True(await node1.WaitForOutputAsync("is gone (410"), node1.Explain("no re-list after 410 logged"));
        Assert.True(await node1.WaitForOutputAsync("kubernetes API server reachable again"), node1.Explain("the recovery is not logged"));
        Assert.True(api.Requests.Count(r => r == "list pods") >= 4, string.Join(", ", api.Requests));
    }

    [Fact]
    public async Task JoinedNode_GetsTheCertificateOfAPodTheApiServerSchedulesThere_EvenPending_ButNotOfAPodItDoesNot()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        await using FakeApiServer api = await StartApiServerAsync(mesh);
        Pod home = mesh.Pod(1, 1), scheduled = mesh.Pod(2, 1), unknown = mesh.Pod(2, 2);
        api.Apply(PodOf(home));
        // Bound to node2, its network being set up: no address yet, so no registry workload; only the placement knows it.
        api.Apply(PodOf(scheduled, phase: "Pending"));
        var caSetup = new AgentSetup();
        MeshCaTests.CaServer(mesh)(caSetup);
        AgentProcess ca = await mesh.StartAgentAsync(mesh.Node(1), OnKubernetes(mesh, api, caSetup.Customize));
        Action<AgentConfig> join = await MeshCaTests.JoinAsync(mesh, mesh.Node(2), "node2");
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), OnKubernetes(mesh, api, join));
        await AddPodAsync(ca, home);
        await EtcdDiscoveryTests.WaitForRegistryAsync(ca, r => r is { State: "synced", Nodes: 1 }, TimeSpan.FromSeconds(10), "node2");

        await AddPodAsync(node2, scheduled);
        string issued = $"CA issued {scheduled.Identity} (";
        Assert.True(await ca.WaitForOutputAsync(issued), ca.Explain($"no '{issued}' for a pod the API server schedules on node2"));

        // Running now: its address is known and it calls out under its own certificate.
        api.Apply(PodOf(scheduled));
        await EtcdDiscoveryTests.WaitForRegistryAsync(ca, r => r.RemoteWorkloads == 1, TimeSpan.FromSeconds(5), "the pod running");
        TcpTestServer echo = await home.StartTcpServerAsync(8080, ServerMode.Echo);
        ProbeResult outbound = await scheduled.ProbeAsync(echo.EndPoint, "placed", TimeSpan.FromSeconds(5));
        Assert.True(outbound is { Outcome: ProbeOutcome.Answered, Answer: "placed" }, mesh.Explain($"the placed pod calling out: {outbound}"));
        FlowRecord inbound = (await ca.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Destination == echo.EndPoint.ToString()))[0];
        Assert.Equal(scheduled.Identity, inbound.SourceIdentity);

        // Registered on node2 but never scheduled there by the API server: refused.
        await AddPodAsync(node2, unknown);
        string refusal = $"CA refused certificate for {unknown.Identity} from node node2";
        Assert.True(await ca.WaitForOutputAsync(refusal), ca.Explain($"no '{refusal}'"));
        Assert.Contains($"{unknown.Identity} is not registered on node node2", ca.Output, StringComparison.Ordinal);
        ProbeResult refused = await unknown.ProbeAsync(echo.EndPoint, "not placed", TimeSpan.FromSeconds(5));
        Assert.True(refused.Outcome != ProbeOutcome.Answered, mesh.Explain($"a pod the API server does not place called out: {refused}"));
    }
}
