using System.Net;
using k8s.Models;
using NodeMesh.Discovery.Kubernetes;
using NodeMesh.Identity;
using NodeMesh.State;
using static NodeMesh.Tests.Kubernetes.KubernetesTestObjects;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>What the registry holds for what the API server has (ClusterRegistryView, pure).</summary>
public sealed class KubernetesRegistryViewTests
{
    private static readonly HashSet<string> Excluded = ["kube-system"];

    private static ClusterState State(IEnumerable<V1Pod>? pods = null, IEnumerable<V1Service>? services = null, IEnumerable<V1EndpointSlice>? slices = null, IEnumerable<V1Node>? nodes = null)
    {
        static ResourceEvent<T> Listed<T>(IEnumerable<T>? items) where T : class => new(ResourceEventKind.Listed, "1", Items: [.. items ?? []]);
        return ClusterState.Empty.With(Listed(pods)).With(Listed(services)).With(Listed(slices)).With(Listed(nodes));
    }

    private static ClusterRegistryEntries Build(ClusterState state) => ClusterRegistryView.Build(state, "node1", "cluster.local", 15008, Excluded);

    [Fact]
    public void RunningPodOnAnotherNode_IsARemoteWorkload_NamedAndIdentifiedByItsServiceAccount()
    {
        ClusterRegistryEntries entries = Build(State(pods: [Pod("shop", "web-0", "node2", "10.240.2.5", serviceAccount: "web")]));
        Workload web = Assert.Single(entries.RemoteWorkloads);
        Assert.Equal("web-0.shop", web.Name);
        Assert.Equal(IPAddress.Parse("10.240.2.5"), web.Ip);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/web", web.Identity.Uri);
        Assert.Equal("node2", web.Node);
        Assert.False(web.IsLocal);
        Assert.Equal("web-0", web.Labels["app"]);
    }

    [Fact]
    public void PodsThatAreNotMeshWorkloadsElsewhere_AreLeftOut()
    {
        ClusterRegistryEntries entries = Build(State(pods:
        [
            Pod("shop", "pending", "node2", null, phase: "Pending"),
            Pod("shop", "unscheduled", null, null, phase: "Pending"),
            Pod("shop", "done", "node2", "10.240.2.6", phase: "Succeeded"),
            Pod("shop", "host", "node2", "10.231.0.2", hostNetwork: true),
            Pod("kube-system", "coredns", "node2", "10.240.2.7"),
            Pod("shop", "v6only", "node2", "fd00::7"),
            Pod("shop", "kept", "node2", "10.240.2.8"),
        ]));
        Assert.Equal(["kept.shop"], entries.RemoteWorkloads.Select(w => w.Name));
    }

    [Fact]
    public void ThisNodesPods_AreNotRemote_ButAreInThePodDirectory()
    {
        ClusterRegistryEntries entries = Build(State(pods:
        [
            Pod("shop", "mine", "node1", "10.240.1.5", serviceAccount: "cart"),
            Pod("shop", "starting", "node1", null, phase: "Pending"),
            Pod("shop", "finished", "node1", "10.240.1.6", phase: "Failed"),
        ]));
        Assert.Empty(entries.RemoteWorkloads);
        Assert.Equal(["mine", "starting"], entries.PodsOnThisNode.Select(p => p.Name));
        Assert.Equal("cart", entries.PodsOnThisNode[0].ServiceAccount);
        Assert.Equal([IPAddress.Parse("10.240.1.5")], entries.PodsOnThisNode[0].Ips);
    }

    [Fact]
    public void OtherNodes_ArePeers_OnTheirInternalIp_AndThisAgentsTunnelPort()
    {
        ClusterRegistryEntries entries = Build(State(nodes: [Node("node1", "10.231.0.1"), Node("node2", "10.231.0.2"), new V1Node { Metadata = new V1ObjectMeta { Name = "bare" } }]));
        Assert.Equal(new Dictionary<string, IPEndPoint> { ["node2"] = IPEndPoint.Parse("10.231.0.2:15008") }, entries.Peers);
    }

    [Fact]
    public void Service_IsAMeshService_OverItsReadyEndpoints_NamedTargetPortsResolvedThroughItsSlices()
    {
        ClusterState state = State(
            services:
            [
                Service("shop", "web", "10.96.0.10", ("http", 80, "http"), ("admin", 9000, "9001")),
                Service("shop", "headless", "None", ("http", 80, "8080")),
            ],
            slices:
            [
                Slice("shop", "web-abc", "web", [("http", 8080), ("admin", 9001)], ("web-0", "10.240.2.5", true), ("web-1", "10.240.3.5", false)),
                Slice("shop", "web-def", "web", [("http", 8080), ("admin", 9001)], ("web-2", "10.240.1.5", true)),
                Slice("other", "web-xyz", "web", [("http", 7000)], ("elsewhere", "10.240.2.9", true)),
            ]);
        MeshService web = Assert.Single(Build(state).Services);
        Assert.Equal("web.shop", web.Name);
        Assert.Equal([IPAddress.Parse("10.96.0.10")], web.Addresses);
        Assert.Equal([new ServicePort(80, 8080), new ServicePort(9000, 9001)], web.Ports);
        Assert.Equal(["web-0.shop", "web-2.shop"], web.Endpoints);
    }

    [Fact]
    public void NamedTargetPort_NoSliceResolves_IsLeftOutWithAReason()
    {
        ClusterRegistryEntries entries = Build(State(services: [Service("shop", "web", "10.96.0.10", ("http", 80, "http"), ("plain", 81, "8081"))]));
        MeshService web = Assert.Single(entries.Services);
        Assert.Equal([new ServicePort(81, 8081)], web.Ports);
        Assert.Empty(web.Endpoints);
        Assert.Contains("service shop/web: port 80 targets 'http', which no endpoint slice resolves yet", entries.Skipped);
    }

    [Fact]
    public void Changes_AreFolded_AddedModifiedDeleted()
    {
        ClusterState state = State(pods: [Pod("shop", "a", "node2", "10.240.2.1")]);
        state = state.With(new ResourceEvent<V1Pod>(ResourceEventKind.Added, "2", Pod("shop", "b", "node2", "10.240.2.2")));
        state = state.With(new ResourceEvent<V1Pod>(ResourceEventKind.Modified, "3", Pod("shop", "a", "node2", "10.240.2.3")));
        state = state.With(new ResourceEvent<V1Pod>(ResourceEventKind.Bookmark, "4"));
        Assert.Equal(["a.shop 10.240.2.3", "b.shop 10.240.2.2"], Build(state).RemoteWorkloads.Select(w => $"{w.Name} {w.Ip}").Order());
        state = state.With(new ResourceEvent<V1Pod>(ResourceEventKind.Deleted, "5", Pod("shop", "a", "node2", "10.240.2.3")));
        Assert.Equal(["b.shop"], Build(state).RemoteWorkloads.Select(w => w.Name));
    }

    [Fact]
    public void Placement_IsWhereAPodOfThatServiceAccountIsScheduled_PendingIncluded()
    {
        ClusterState state = State(pods:
        [
            Pod("shop", "web-0", "node2", null, serviceAccount: "web", phase: "Pending"),
            Pod("shop", "old", "node3", "10.240.3.1", serviceAccount: "batch", phase: "Succeeded"),
            Pod("kube-system", "proxy", "node2", "10.240.2.9", serviceAccount: "proxy"),
        ]);
        Assert.True(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node2", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web")));
        Assert.False(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node3", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web")));
        Assert.False(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node2", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/other")));
        Assert.False(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node3", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/batch")));
        Assert.False(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node2", SpiffeId.Parse("spiffe://cluster.local/ns/kube-system/sa/proxy")));
        Assert.False(ClusterRegistryView.Places(state, "cluster.local", Excluded, "node2", SpiffeId.Parse("spiffe://other.domain/ns/shop/sa/web")));
    }
}
