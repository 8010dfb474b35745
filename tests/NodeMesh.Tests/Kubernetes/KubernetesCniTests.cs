using k8s.Models;
using NodeMesh.Contracts;
using NodeMesh.Tests.Integration;
using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Kubernetes.KubernetesDiscoveryTests;
using static NodeMesh.Tests.Kubernetes.KubernetesTestObjects;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>
/// The CNI shim (chained after Debian's bridge and host-local) on agents whose source is the test's API server: the
/// pod's identity is its service account's as the API server lists it, only a pod placed on the node is captured, and
/// at start the agent reconciles its node with the API server: pods it places here are captured, CNI pods it no longer
/// does are removed.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class KubernetesCniTests(ITestOutputHelper output)
{
    [Fact]
    public async Task CniAdd_WaitsForThePodsListing_TakesItsServiceAccountsIdentity_AndRefusesAPodNotPlacedOnTheNode()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await using FakeApiServer api = await StartApiServerAsync(mesh);
        Pod remote = mesh.Pod(2, 1);
        api.Apply(PodOf(remote));
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), OnKubernetes(mesh, api));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), OnKubernetes(mesh, api));
        await AddPodAsync(node2, remote);
        TcpTestServer echo = await remote.StartTcpServerAsync(8080, ServerMode.Echo);
        var runtime = new CniRuntime(mesh, mesh.Node(1), CniRuntime.BridgeThenShim(mesh, mesh.Node(1), node1.SocketPath));

        // The runtime calls ADD as soon as the sandbox exists; the agent's watch may see the pod a moment later.
        Task<(CniPod? Pod, CniResult Result)> adding = runtime.AddPodAsync("shop", "web-1");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(adding.IsCompleted, "ADD returned before the API server listed the pod");
        api.Apply(Pod("shop", "web-1", "node1", ip: null, serviceAccount: "web", phase: "Pending", uid: "6f1c2a7e-0001-4c3b-9d1e-000000000001"));
        (CniPod? pod, CniResult added) = await adding;
        Assert.True(pod is not null, mesh.Explain($"ADD: {added}"));

        const string identity = "spiffe://cluster.local/ns/shop/sa/web";
        WorkloadInfo captured = Assert.Single(await node1.WorkloadListAsync(), w => w.Name == "web-1.shop");
        Assert.Equal(("cni", identity, pod.Ip.ToString()), (captured.Source, captured.Identity, captured.Ip));

        // The kubelet reports the address ADD returned; then its flow to node2's pod carries that identity, which node2 authenticates.
        api.Apply(Pod("shop", "web-1", "node1", pod.Ip.ToString(), serviceAccount: "web", uid: "6f1c2a7e-0001-4c3b-9d1e-000000000001"));
        await EtcdDiscoveryTests.WaitForRegistryAsync(node1, r => r is { State: "synced", RemoteWorkloads: 1 }, TimeSpan.FromSeconds(10), "node2's pod");
        await EtcdDiscoveryTests.WaitForRegistryAsync(node2, r => r is { State: "synced", RemoteWorkloads: 1 }, TimeSpan.FromSeconds(10), "the CNI pod with its address");
        string marker = TestData.Marker("sa");
        ProbeResult sent = await pod.ProbeAsync(echo.EndPoint, marker, TimeSpan.FromSeconds(5));
        Assert.True(sent is { Outcome: ProbeOutcome.Answered } && sent.Answer == marker, mesh.Explain($"from the CNI pod: {sent}"));
        FlowRecord inbound = (await node2.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Destination == echo.EndPoint.ToString()))[0];
        Assert.Equal((identity, true), (inbound.SourceIdentity, inbound.Encrypted));

        // The API server places this one on node2: node1 refuses to capture it as its own.
        api.Apply(Pod("shop", "elsewhere", "node2", ip: null, serviceAccount: "web", phase: "Pending"));
        (CniPod? misplaced, CniResult refused) = await runtime.AddPodAsync("shop", "elsewhere");
        Assert.True(misplaced is null && refused is { ErrorCode: 100, Plugin: "nodemesh-cni" }, refused.ToString());
        Assert.True(refused.Json!["msg"]!.GetValue<string>().Contains("placed on node 'node2'", StringComparison.Ordinal), refused.ToString());

        // Not listed at all (within the wait): its identity is unknown, so it is not started.
        (CniPod? unknown, CniResult unlisted) = await runtime.AddPodAsync("shop", "unlisted");
        Assert.True(unknown is null && unlisted is { ErrorCode: 100, Plugin: "nodemesh-cni" }, unlisted.ToString());
        Assert.True(unlisted.Json!["msg"]!.GetValue<string>().Contains("not listed by the API server", StringComparison.Ordinal), unlisted.ToString());
        Assert.Equal(["web-1.shop"], (await node1.WorkloadListAsync()).Select(w => w.Name));
        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.Equal(1, AgentMetrics.Value(scrape, "nodemesh_cni_requests_total", new Dictionary<string, string> { ["command"] = "pod-add", ["result"] = "ok" }));
        Assert.Equal(2, AgentMetrics.Value(scrape, "nodemesh_cni_requests_total", new Dictionary<string, string> { ["command"] = "pod-add", ["result"] = "refused" }));
    }

    [Fact]
    public async Task AtStart_APodTheApiServerPlacesHereIsCaptured_AndACniPodItNoLongerListsIsRemoved()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        await using FakeApiServer api = await StartApiServerAsync(mesh);
        // A pod running on the node whose ADD the agent never saw (installed after it, or the state lost).
        Pod stray = mesh.Pod(1, 1);
        api.Apply(Pod("shop", "stray", "node1", stray.Ip.ToString(), serviceAccount: "stray", uid: "6f1c2a7e-0002-4c3b-9d1e-000000000002"));
        api.Apply(Pod("kube-system", "coredns", "node1", "10.240.1.77", serviceAccount: "coredns"));
        api.Apply(Pod("shop", "gone", "node1", ip: null, serviceAccount: "gone", phase: "Pending", uid: "6f1c2a7e-0003-4c3b-9d1e-000000000003"));
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), OnKubernetes(mesh, api));

        WorkloadInfo? adopted = null;
        for (int i = 0; i < 50 && adopted is null; i++)
        {
            adopted = (await node1.WorkloadListAsync()).FirstOrDefault(w => w.Name == "stray.shop");
            if (adopted is null)
            {
                await Task.Delay(200);
            }
        }

        Assert.True(adopted is not null, node1.Explain("the uncaptured pod of this node was not captured at start"));
        Assert.Equal(("cni", "spiffe://cluster.local/ns/shop/sa/stray", stray.Ip.ToString(), stray.NetnsPath, "adopted-6f1c2a7e-0002-4c3b-9d1e-000000000002"),
            (adopted.Source, adopted.Identity, adopted.Ip, adopted.Netns, adopted.ContainerId));
        Assert.Contains("NODEMESH", await stray.IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.True(await node1.WaitForOutputAsync("pod shop/stray was not captured; captured now in"), node1.Explain("the adoption is not logged"));
        // The reconcile pass counts once it has been through every pod, a moment after the adoption's log line.
        var capturedAction = new Dictionary<string, string> { ["action"] = "captured" };
        IReadOnlyList<PrometheusSample> first = await AgentMetrics.WaitForAsync(mesh, 1, "/metrics",
            scrape => AgentMetrics.Value(scrape, "nodemesh_pods_reconciled_total", capturedAction) is not null, prefix: "nodemesh_pods_");
        Assert.Equal(1, AgentMetrics.Value(first, "nodemesh_pods_reconciled_total", capturedAction));

        var runtime = new CniRuntime(mesh, mesh.Node(1), CniRuntime.BridgeThenShim(mesh, mesh.Node(1), node1.SocketPath));
        (CniPod? gone, CniResult added) = await runtime.AddPodAsync("shop", "gone");
        Assert.True(gone is not null, mesh.Explain($"ADD: {added}"));

        // Deleted while the agent is down, and its DEL never reached the agent: the restart restores it from the
        // state, then drops it, rules and all, once the API server's listing shows it is gone.
        Assert.Equal(0, await node1.StopAsync());
        api.Delete<V1Pod>("shop", "gone");
        await node1.RestartAsync();
        Assert.True(await node1.WaitForOutputAsync("pod gone.shop: the API server no longer places it on this node; removed", TimeSpan.FromSeconds(15)),
            node1.Explain("the pod the API server no longer lists was not removed"));
        Assert.Equal(["stray.shop"], (await node1.WorkloadListAsync()).Select(w => w.Name));
        var removedAction = new Dictionary<string, string> { ["action"] = "removed" };
        IReadOnlyList<PrometheusSample> afterRestart = await AgentMetrics.WaitForAsync(mesh, 1, "/metrics",
            scrape => AgentMetrics.Value(scrape, "nodemesh_pods_reconciled_total", removedAction) is not null, prefix: "nodemesh_pods_");
        Assert.Equal(1, AgentMetrics.Value(afterRestart, "nodemesh_pods_reconciled_total", removedAction));
        Assert.DoesNotContain("NODEMESH", await gone.IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.DoesNotContain("gone.shop", await File.ReadAllTextAsync(Path.Combine(node1.StateDir, "workloads.json")), StringComparison.Ordinal);
        Assert.Contains("NODEMESH", await stray.IptablesSaveAsync(), StringComparison.Ordinal);

        // The runtime's DEL of the adopted pod (its sandbox id unknown to the agent) removes it by name; asked of the
        // shim alone, as the bridge never wired this namespace.
        CniResult deleted = await runtime.RunOneAsync("nodemesh-cni", "DEL", "4d2a9c00ffee", stray.NetnsPath, "shop", "stray");
        Assert.True(deleted.Succeeded, mesh.Explain($"DEL of the adopted pod: {deleted}"));
        Assert.Empty(await node1.WorkloadListAsync());
        Assert.DoesNotContain("NODEMESH", await stray.IptablesSaveAsync(), StringComparison.Ordinal);
    }
}
