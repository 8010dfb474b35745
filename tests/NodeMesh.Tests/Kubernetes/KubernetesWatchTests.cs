using k8s.Models;
using NodeMesh.Discovery.Kubernetes;
using static NodeMesh.Tests.Kubernetes.KubernetesTestObjects;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>
/// The list-and-watch client against a test API server on loopback that speaks the real protocol: pages, the
/// chunked event stream, bookmarks, 410 Gone in both forms, dropped connections, malformed lines, 401 and 403.
/// </summary>
public sealed class KubernetesWatchTests : IAsyncLifetime
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nm-kube-" + Guid.NewGuid().ToString("N")[..8]);
    private FakeApiServer _server = null!;

    public async Task InitializeAsync() => _server = await FakeApiServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private WatchRecorder<V1Pod, V1PodList> WatchPods(int pageSize = 500, string? token = "test-token") =>
        new(WatchRecorder<V1Pod, V1PodList>.Client(_server, _dir, token), KubernetesResources.Pods, pageSize);

    [Fact]
    public async Task ListsInPages_ThenTellsEveryChangeInOrder_EachWithItsResourceVersion()
    {
        for (int i = 0; i < 7; i++)
        {
            _server.Apply(Pod("shop", $"web-{i}", "node2", $"10.240.2.{i + 10}"));
        }

        long listedAt = _server.Version;
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods(pageSize: 3);
        ResourceEvent<V1Pod> listed = await watch.NextAsync();
        Assert.Equal(ResourceEventKind.Listed, listed.Kind);
        Assert.Equal(listedAt.ToString(), listed.ResourceVersion);
        Assert.Equal([.. Enumerable.Range(0, 7).Select(i => $"web-{i}")], listed.Items!.Select(p => p.Metadata.Name).Order());
        Assert.Equal(["list pods", "list pods continue", "list pods continue"], _server.Requests.Take(3));

        await WaitForWatchAsync();
        long added = _server.Apply(Pod("shop", "cart", "node1", "10.240.1.5"));
        long modified = _server.Apply(Pod("shop", "cart", "node1", "10.240.1.6"));
        long deleted = _server.Delete<V1Pod>("shop", "web-3");
        var changes = new[] { await watch.NextAsync(), await watch.NextAsync(), await watch.NextAsync() };
        Assert.Equal([ResourceEventKind.Added, ResourceEventKind.Modified, ResourceEventKind.Deleted], changes.Select(c => c.Kind));
        Assert.Equal([added.ToString(), modified.ToString(), deleted.ToString()], changes.Select(c => c.ResourceVersion));
        Assert.Equal("10.240.1.6", changes[1].Object!.Status.PodIP);
        Assert.Equal("web-3", changes[2].Object!.Metadata.Name);
        Assert.Contains($"watch pods from {listedAt}", _server.Requests);
    }

    [Fact]
    public async Task DroppedConnection_ResumesFromTheLastVersion_WithoutLosingOrRepeatingAChange()
    {
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods();
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextAsync()).Kind);
        await WaitForWatchAsync();
        long first = _server.Apply(Pod("shop", "a", "node2", "10.240.2.1"));
        Assert.Equal(first.ToString(), (await watch.NextAsync()).ResourceVersion);

        _server.DropWatches();
        // Changes while the client has no watch: it must get each one, once, from the resumed watch.
        long[] meanwhile = [_server.Apply(Pod("shop", "b", "node2", "10.240.2.2")), _server.Apply(Pod("shop", "a", "node2", "10.240.2.3")), _server.Delete<V1Pod>("shop", "b")];
        ResourceEvent<V1Pod> failed = await watch.NextAsync();
        Assert.True(failed is { Kind: ResourceEventKind.Failed, Reason: "disconnected" }, WatchRecorder<V1Pod, V1PodList>.Describe([failed]));
        Assert.Contains("watch pods", failed.Error, StringComparison.Ordinal);

        var resumed = new List<ResourceEvent<V1Pod>>();
        for (int i = 0; i < meanwhile.Length; i++)
        {
            resumed.Add(await watch.NextAsync());
        }

        Assert.Equal(meanwhile.Select(v => v.ToString()), resumed.Select(e => e.ResourceVersion));
        Assert.Equal([ResourceEventKind.Added, ResourceEventKind.Modified, ResourceEventKind.Deleted], resumed.Select(e => e.Kind));
        Assert.Contains($"watch pods from {first}", _server.Requests);
        Assert.Single(_server.Requests, r => r == "list pods");
        await Task.Delay(300);
        Assert.Equal(1 + 1 + 1 + 3, watch.All.Count);
    }

    [Fact]
    public async Task Bookmark_AdvancesTheVersion_TheWatchResumesFromIt()
    {
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods();
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextAsync()).Kind);
        await WaitForWatchAsync();
        // Other resources move the shared counter; pods see only a bookmark.
        _server.Apply(Node("node2", "10.231.0.2"));
        long moved = _server.Apply(Node("node3", "10.231.0.3"));
        _server.Bookmark();
        ResourceEvent<V1Pod> bookmark = await watch.NextAsync();
        Assert.Equal(ResourceEventKind.Bookmark, bookmark.Kind);
        Assert.Equal(moved.ToString(), bookmark.ResourceVersion);
        Assert.Null(bookmark.Object);

        // Compacted up to the bookmark: a client that had not kept it would be told 410 and list again.
        _server.Compact();
        _server.DropWatches();
        long after = _server.Apply(Pod("shop", "c", "node2", "10.240.2.9"));
        ResourceEvent<V1Pod> next = await watch.NextMatchingAsync(e => e.Kind != ResourceEventKind.Failed);
        Assert.True(next.Kind == ResourceEventKind.Added && next.ResourceVersion == after.ToString(), WatchRecorder<V1Pod, V1PodList>.Describe(watch.All));
        Assert.Contains($"watch pods from {moved}", _server.Requests);
        Assert.Single(_server.Requests, r => r == "list pods");
    }

    [Theory]
    [InlineData(GoneStyle.ErrorEvent)]
    [InlineData(GoneStyle.HttpStatus)]
    public async Task Gone410_ListsAgain_AndConvergesOnTheServersState(GoneStyle style)
    {
        _server.Gone = style;
        _server.Apply(Pod("shop", "old", "node2", "10.240.2.1"));
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods();
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextAsync()).Kind);
        await WaitForWatchAsync();

        // The client is away while things change and the history it would resume from is compacted.
        _server.DropWatches();
        _server.Delete<V1Pod>("shop", "old");
        _server.Apply(Pod("shop", "new", "node2", "10.240.2.2"));
        _server.Compact();

        ResourceEvent<V1Pod> gone = await watch.NextMatchingAsync(e => e.Reason == "gone");
        Assert.Contains("410", gone.Error, StringComparison.Ordinal);
        ResourceEvent<V1Pod> relisted = await watch.NextAsync();
        Assert.Equal(ResourceEventKind.Listed, relisted.Kind);
        Assert.Equal(["new"], relisted.Items!.Select(p => p.Metadata.Name));
        Assert.Equal(_server.Version.ToString(), relisted.ResourceVersion);
        Assert.Equal(2, _server.Requests.Count(r => r == "list pods"));
    }

    [Fact]
    public async Task ExpiredContinueToken_ListsAgainFromTheStart()
    {
        for (int i = 0; i < 4; i++)
        {
            _server.Apply(Pod("shop", $"p{i}", "node2", $"10.240.2.{i + 1}"));
        }

        // A compaction between two pages: the first attempt's continue token is refused with 410.
        _server.ExpireNextContinue = true;
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods(pageSize: 1);
        ResourceEvent<V1Pod> gone = await watch.NextAsync();
        Assert.True(gone is { Kind: ResourceEventKind.Failed, Reason: "gone" }, WatchRecorder<V1Pod, V1PodList>.Describe([gone]));
        ResourceEvent<V1Pod> listed = await watch.NextAsync();
        Assert.Equal(ResourceEventKind.Listed, listed.Kind);
        Assert.Equal(4, listed.Items!.Count);
        Assert.Equal(["list pods", "list pods continue", "list pods", "list pods continue", "list pods continue", "list pods continue"], _server.Requests.Take(6));
    }

    [Fact]
    public async Task MalformedLine_IsAClearFailure_AndTheResourceIsListedAgain()
    {
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods();
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextAsync()).Kind);
        await WaitForWatchAsync();
        _server.SendRaw("pods", "{\"type\":\"ADDED\",\"object\":{\"metadata\":");
        ResourceEvent<V1Pod> failed = await watch.NextAsync();
        Assert.True(failed is { Kind: ResourceEventKind.Failed, Reason: "malformed" }, WatchRecorder<V1Pod, V1PodList>.Describe([failed]));
        Assert.Contains("watch pods: a line that is not JSON", failed.Error, StringComparison.Ordinal);
        Assert.Contains("{\"type\":\"ADDED\"", failed.Error, StringComparison.Ordinal);
        _server.Apply(Pod("shop", "after", "node2", "10.240.2.7"));
        ResourceEvent<V1Pod> relisted = await watch.NextMatchingAsync(e => e.Kind == ResourceEventKind.Listed);
        Assert.Contains(relisted.Items!, p => p.Metadata.Name == "after");
    }

    [Fact]
    public void WatchLines_ThatAreNotEvents_AreRefusedWithTheirReason()
    {
        Assert.Contains("unknown event type 'RENAMED'",
            Assert.Throws<MalformedWatchException>(() => ResourceWatch<V1Pod, V1PodList>.Parse("{\"type\":\"RENAMED\",\"object\":{}}", KubernetesResources.Pods)).Message, StringComparison.Ordinal);
        Assert.Contains("without metadata.resourceVersion",
            Assert.Throws<MalformedWatchException>(() => ResourceWatch<V1Pod, V1PodList>.Parse("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}", KubernetesResources.Pods)).Message, StringComparison.Ordinal);
        Assert.Contains("not a watch event",
            Assert.Throws<MalformedWatchException>(() => ResourceWatch<V1Pod, V1PodList>.Parse("[1,2]", KubernetesResources.Pods)).Message, StringComparison.Ordinal);
        KubernetesApiException error = Assert.Throws<KubernetesApiException>(() => ResourceWatch<V1Pod, V1PodList>.Parse(
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource version: 5 (9)\",\"reason\":\"Expired\",\"code\":410}}",
            KubernetesResources.Pods));
        Assert.True(error.IsGone, error.Message);
        Assert.Contains("too old resource version: 5 (9)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongToken_IsA401_NamingTheResource_AndIsRetriedUntilAccepted()
    {
        await using WatchRecorder<V1Pod, V1PodList> watch = WatchPods(token: "stale");
        ResourceEvent<V1Pod> refused = await watch.NextAsync();
        Assert.True(refused is { Kind: ResourceEventKind.Failed, Reason: "unauthorized" }, WatchRecorder<V1Pod, V1PodList>.Describe([refused]));
        Assert.StartsWith("401 Unauthorized on list pods", refused.Error, StringComparison.Ordinal);

        _server.Token = "stale";
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextMatchingAsync(e => e.Kind != ResourceEventKind.Failed)).Kind);
    }

    [Fact]
    public async Task Forbidden_IsA403_NamingTheRbacVerbsNeeded()
    {
        _server.Forbidden.Add("endpointslices");
        await using var watch = new WatchRecorder<V1EndpointSlice, V1EndpointSliceList>(
            WatchRecorder<V1Pod, V1PodList>.Client(_server, _dir), KubernetesResources.EndpointSlices);
        ResourceEvent<V1EndpointSlice> refused = await watch.NextAsync();
        Assert.Equal("forbidden", refused.Reason);
        Assert.Contains("403 Forbidden on list endpointslices: the agent's identity needs RBAC verbs list and watch on endpointslices (apiGroup \"discovery.k8s.io\")", refused.Error, StringComparison.Ordinal);
        Assert.True(refused.Error!.Contains("cannot list resource \"endpointslices\"", StringComparison.Ordinal), refused.Error);
    }

    [Fact]
    public async Task WatchEndedByTheServer_AtTimeoutSeconds_IsResumedWithoutAFailure()
    {
        await using var watch = new WatchRecorder<V1Pod, V1PodList>(WatchRecorder<V1Pod, V1PodList>.Client(_server, _dir), KubernetesResources.Pods, watchTimeout: TimeSpan.FromSeconds(1));
        Assert.Equal(ResourceEventKind.Listed, (await watch.NextAsync()).Kind);
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        long added = _server.Apply(Pod("shop", "late", "node2", "10.240.2.3"));
        ResourceEvent<V1Pod> late = await watch.NextAsync();
        Assert.Equal(added.ToString(), late.ResourceVersion);
        Assert.True(_server.Requests.Count(r => r.StartsWith("watch pods", StringComparison.Ordinal)) >= 2, string.Join(", ", _server.Requests));
        Assert.DoesNotContain(watch.All, e => e.Kind == ResourceEventKind.Failed);
        Assert.True(watch.WatchesOpened >= 2, $"{watch.WatchesOpened} watches opened");
    }

    private async Task WaitForWatchAsync()
    {
        for (int i = 0; i < 100 && _server.OpenWatches == 0; i++)
        {
            await Task.Delay(20);
        }

        Assert.True(_server.OpenWatches > 0, "the client opened no watch");
    }
}
