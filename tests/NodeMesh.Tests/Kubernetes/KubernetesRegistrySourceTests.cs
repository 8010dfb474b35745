using System.Net;
using k8s.Models;
using Microsoft.Extensions.Logging.Testing;
using NodeMesh.Config;
using NodeMesh.Discovery;
using NodeMesh.Discovery.Kubernetes;
using NodeMesh.Identity;
using NodeMesh.State;
using NodeMesh.Telemetry;
using static NodeMesh.Tests.Kubernetes.KubernetesTestObjects;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>The kubernetes source in process, with a real registry, against the test API server on loopback.</summary>
public sealed class KubernetesRegistrySourceTests : IAsyncLifetime
{
    private static readonly TimeSpan Soon = TimeSpan.FromSeconds(10);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nm-kube-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly WorkloadRegistry _registry = new();
    private readonly MeshMetrics _metrics = new();
    private readonly FakeLogger<KubernetesRegistrySource> _log = new();
    private FakeApiServer _server = null!;
    private KubernetesRegistrySource? _source;

    public async Task InitializeAsync()
    {
        _server = await FakeApiServer.StartAsync();
        _server.Apply(Node("node1", "10.231.0.1"));
        _server.Apply(Node("node2", "10.231.0.2"));
    }

    public async Task DisposeAsync()
    {
        if (_source is not null)
        {
            await _source.DisposeAsync();
        }

        await _server.DisposeAsync();
        _metrics.Dispose();
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private KubernetesRegistrySource Start()
    {
        var config = new AgentConfig
        {
            Node = new NodeConfig { Name = "node1", Address = "10.231.0.1" },
            Discovery = new DiscoveryConfig
            {
                Source = DiscoverySource.Kubernetes,
                Kubernetes = new KubernetesConfig
                {
                    Kubeconfig = KubeconfigFile.Write(_dir, _server.Url, "test-token"),
                    RequestTimeout = TimeSpan.FromSeconds(2), InitialBackoff = TimeSpan.FromMilliseconds(50), MaxBackoff = TimeSpan.FromMilliseconds(300),
                },
            },
        };
        _source = new KubernetesRegistrySource(config, _registry, _metrics, _log);
        _source.Start();
        return _source;
    }

    private async Task WaitForRegistryAsync(Func<RegistrySnapshot, bool> condition, string what) =>
        Assert.True(await _registry.WaitUntilAsync(condition, Soon, CancellationToken.None), $"{what}; status {_source?.Status()}; log:\n{string.Join("\n", _log.Collector.GetSnapshot().Select(r => r.Message))}");

    [Fact]
    public async Task PodsServicesAndNodes_AppearInTheRegistry_AndGoWhenDeleted()
    {
        _server.Apply(Pod("shop", "web-0", "node2", "10.240.2.5", serviceAccount: "web"));
        _server.Apply(Pod("shop", "cart-0", "node1", "10.240.1.5", serviceAccount: "cart"));
        _server.Apply(Service("shop", "web", "10.96.0.10", ("http", 80, "http")));
        _server.Apply(Slice("shop", "web-abc", "web", [("http", 8080)], ("web-0", "10.240.2.5", true)));
        KubernetesRegistrySource source = Start();
        await source.Synced.WaitAsync(Soon);

        RegistrySnapshot now = _registry.Current;
        Workload web = now.FindByName("web-0.shop") ?? throw new Xunit.Sdk.XunitException("web-0.shop not in the registry");
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/web", web.Identity.Uri);
        Assert.Null(now.FindByName("cart-0.shop"));
        Assert.Equal(new Dictionary<string, IPEndPoint> { ["node2"] = IPEndPoint.Parse("10.231.0.2:15008") }, now.PeerNodes);
        MeshService service = now.FindService(IPAddress.Parse("10.96.0.10")) ?? throw new Xunit.Sdk.XunitException("no service");
        Assert.Equal([new ServicePort(80, 8080)], service.Ports);
        Assert.Equal(["web-0.shop"], service.Endpoints);
        Assert.Equal(["cart-0"], source.PodsOnThisNode()!.Select(p => p.Name));
        Assert.True(source.Status() is { Source: "kubernetes", State: "synced", Nodes: 1, RemoteWorkloads: 1 }, $"{source.Status()}");
        Assert.Equal(_server.Version, source.Status().Revision);

        // A new pod elsewhere and a node joining, then the first pod deleted.
        _server.Apply(Node("node3", "10.231.0.3"));
        _server.Apply(Pod("shop", "web-1", "node3", "10.240.3.5", serviceAccount: "web"));
        _server.Apply(Slice("shop", "web-abc", "web", [("http", 8080)], ("web-0", "10.240.2.5", true), ("web-1", "10.240.3.5", true)));
        await WaitForRegistryAsync(r => r.FindByName("web-1.shop") is { Node: "node3" } && r.PeerNodes.ContainsKey("node3")
            && r.FindService(IPAddress.Parse("10.96.0.10"))?.Endpoints.Count == 2, "web-1 on node3 and in the service");
        _server.Delete<V1Pod>("shop", "web-0");
        _server.Delete<V1Service>("shop", "web");
        await WaitForRegistryAsync(r => r.FindByName("web-0.shop") is null && r.FindService(IPAddress.Parse("10.96.0.10")) is null, "web-0 and the service gone");
    }

    [Fact]
    public async Task FindAsync_WaitsForAPodTheWatchDeliversLater_AndGivesUpAtItsTimeout()
    {
        KubernetesRegistrySource source = Start();
        await source.Synced.WaitAsync(Soon);
        Assert.True(source.KnowsPods);
        Assert.Empty(source.PodsOnThisNode()!);

        Task<PodFacts?> waiting = source.FindAsync("shop", "late", TimeSpan.FromSeconds(5), CancellationToken.None);
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        _server.Apply(Pod("shop", "late", "node1", null, serviceAccount: "late", phase: "Pending"));
        PodFacts? found = await waiting.WaitAsync(Soon);
        Assert.True(found is { ServiceAccount: "late", Node: "node1" }, $"{found}");
        Assert.Equal(["late"], source.PodsOnThisNode()!.Select(p => p.Name));

        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.Null(await source.FindAsync("shop", "never", TimeSpan.FromMilliseconds(300), CancellationToken.None));
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(290), $"gave up after {watch.Elapsed.TotalMilliseconds} ms");
    }

    [Fact]
    public async Task Placement_ForTheCa_IsWhereThePodIsScheduled_OnceSynced()
    {
        _server.Apply(Pod("shop", "web-0", "node2", null, serviceAccount: "web", phase: "Pending"));
        KubernetesRegistrySource source = Start();
        await source.Synced.WaitAsync(Soon);
        Assert.True(source.Places("node2", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web")));
        Assert.False(source.Places("node1", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web")));
        _server.Delete<V1Pod>("shop", "web-0");
        Assert.True(await _registry.WaitUntilAsync(_ => !source.Places("node2", SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web")), Soon, CancellationToken.None),
            "the placement outlived the pod");
    }

    [Fact]
    public async Task ApiServerDown_TheLastRegistryStays_AndWhatChangedMeanwhileArrivesWhenItIsBack()
    {
        _server.Apply(Pod("shop", "web-0", "node2", "10.240.2.5"));
        KubernetesRegistrySource source = Start();
        await source.Synced.WaitAsync(Soon);

        await _server.StopAsync();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (source.Status().State != "disconnected" && watch.Elapsed < Soon)
        {
            await Task.Delay(50);
        }

        Assert.True(source.Status() is { State: "disconnected", LastError: not null, DisconnectedSince: not null }, $"{source.Status()}");
        Assert.NotNull(_registry.Current.FindByName("web-0.shop"));
        _server.Apply(Pod("shop", "web-1", "node2", "10.240.2.6"));

        await _server.StartAsync();
        await WaitForRegistryAsync(r => r.FindByName("web-1.shop") is not null && r.FindByName("web-0.shop") is not null, "the change made while it was down");
        while (source.Status().State != "synced" && watch.Elapsed < Soon * 2)
        {
            await Task.Delay(50);
        }

        Assert.True(source.Status() is { State: "synced", LastError: null }, $"{source.Status()} requests: {string.Join(", ", _server.Requests)}");
        Assert.Contains(_log.Collector.GetSnapshot(), r => r.Message.Contains("kubernetes API server reachable again", StringComparison.Ordinal));
        Assert.Contains(_log.Collector.GetSnapshot(), r => r.Message.Contains("kubernetes API server unreachable", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Gone_ReListsAndConverges_RemovingWhatWasDeletedMeanwhile()
    {
        _server.Apply(Pod("shop", "old", "node2", "10.240.2.5"));
        KubernetesRegistrySource source = Start();
        await source.Synced.WaitAsync(Soon);
        await WaitForRegistryAsync(r => r.FindByName("old.shop") is not null, "old listed");

        await _server.StopAsync();
        _server.Delete<V1Pod>("shop", "old");
        _server.Apply(Pod("shop", "new", "node2", "10.240.2.6"));
        _server.Compact();
        await _server.StartAsync();
        await WaitForRegistryAsync(r => r.FindByName("new.shop") is not null && r.FindByName("old.shop") is null, "the re-list after 410");
        Assert.Contains(_log.Collector.GetSnapshot(), r => r.Message.Contains("kubernetes pods watch from resourceVersion", StringComparison.Ordinal) && r.Message.Contains("is gone (410", StringComparison.Ordinal));
        Assert.True(_server.Requests.Count(r => r == "list pods") >= 2, string.Join(", ", _server.Requests));
    }

    [Fact]
    public async Task NotSyncedYet_PodDirectoryAndPlacementKnowNothing_AndStatusSaysSyncing()
    {
        await _server.StopAsync();
        KubernetesRegistrySource source = Start();
        await Task.Delay(300);
        Assert.False(source.Synced.IsCompleted);
        Assert.Null(source.PodsOnThisNode());
        Assert.True(source.Status() is { State: "syncing", LastError: not null }, $"{source.Status()}");
        await _server.StartAsync();
        await source.Synced.WaitAsync(Soon);
        Assert.NotNull(source.PodsOnThisNode());
    }
}
