using System.Threading.Channels;
using k8s;
using k8s.Models;
using NodeMesh.Config;
using NodeMesh.Discovery.Kubernetes;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>A <see cref="ResourceWatch{T, TList}"/> run against a test's API server, every event it tells kept in order.</summary>
internal sealed class WatchRecorder<T, TList> : IAsyncDisposable
    where T : class, IKubernetesObject<V1ObjectMeta>
    where TList : class, IItems<T>, IMetadata<V1ListMeta>
{
    private readonly Channel<ResourceEvent<T>> _events = Channel.CreateUnbounded<ResourceEvent<T>>();
    private readonly List<ResourceEvent<T>> _all = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly KubernetesApiClient _api;
    private readonly Task _running;
    private int _watchesOpened;

    public WatchRecorder(KubernetesApiClient api, KubernetesResource<T, TList> resource, int pageSize = 500, TimeSpan? watchTimeout = null)
    {
        _api = api;
        var watch = new ResourceWatch<T, TList>(api, resource,
            new ResourceWatchOptions(pageSize, TimeSpan.FromSeconds(3), watchTimeout ?? TimeSpan.FromMinutes(1), TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(400)));
        _running = Task.Run(() => watch.RunAsync(e =>
        {
            if (e.Kind == ResourceEventKind.Watching)
            {
                Interlocked.Increment(ref _watchesOpened);
                return;
            }

            lock (_all)
            {
                _all.Add(e);
            }

            _events.Writer.TryWrite(e);
        }, _stop.Token));
    }

    /// <summary>A client of <paramref name="server"/> through a kubeconfig written in <paramref name="directory"/>.</summary>
    public static KubernetesApiClient Client(FakeApiServer server, string directory, string? token = "test-token") =>
        KubernetesApiClient.Create(new KubernetesConfig { Kubeconfig = KubeconfigFile.Write(directory, server.Url, token) }, _ => null);

    /// <summary>Watches the server answered (the Watching events, kept out of <see cref="All"/> so that it reads as the resource's history).</summary>
    public int WatchesOpened => Volatile.Read(ref _watchesOpened);

    public IReadOnlyList<ResourceEvent<T>> All
    {
        get
        {
            lock (_all)
            {
                return [.. _all];
            }
        }
    }

    /// <summary>The next event not taken yet.</summary>
    public async Task<ResourceEvent<T>> NextAsync(TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            return await _events.Reader.ReadAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no event within {(timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds} s; so far: {Describe(All)}");
        }
    }

    /// <summary>Takes events until one matches (returned); the ones before are skipped.</summary>
    public async Task<ResourceEvent<T>> NextMatchingAsync(Func<ResourceEvent<T>, bool> match, TimeSpan? timeout = null)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan limit = timeout ?? TimeSpan.FromSeconds(10);
        while (true)
        {
            ResourceEvent<T> next = await NextAsync(limit - watch.Elapsed > TimeSpan.Zero ? limit - watch.Elapsed : TimeSpan.FromMilliseconds(1));
            if (match(next))
            {
                return next;
            }
        }
    }

    public static string Describe(IEnumerable<ResourceEvent<T>> events) =>
        string.Join("; ", events.Select(e => $"{e.Kind} {e.ResourceVersion} {e.Object?.Metadata?.Name}{(e.Items is null ? "" : $" [{e.Items.Count}]")}{(e.Error is null ? "" : $" {e.Reason}: {e.Error}")}"));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _running.WaitAsync(TimeSpan.FromSeconds(5));
        _api.Dispose();
        _stop.Dispose();
    }
}
