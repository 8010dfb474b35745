using System.Diagnostics;
using System.Globalization;
using System.Net;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;
using NodeMesh.Sockets;
using NodeMesh.State;
using NodeMesh.Telemetry;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// discovery.source "kubernetes": Pods, Services, EndpointSlices and Nodes listed and watched cluster-wide (four
/// <see cref="ResourceWatch{T, TList}"/>), folded into one <see cref="ClusterState"/> and handed to the registry in one
/// swap per change (<see cref="ClusterRegistryView"/> decides what it holds). Nothing is published: the API server
/// is the truth about every node, this one included; this node's pods are captured through the CNI shim and are
/// told to it by the <see cref="IPodDirectory"/> side of this source. While the API server is unreachable the last
/// registry stays in force; the first sync is complete when all four resources are listed once.
/// </summary>
internal sealed partial class KubernetesRegistrySource : IRegistrySource, IPodDirectory, IIdentityPlacement
{
    private const int ResourceCount = 4;

    private readonly AgentConfig _config;
    private readonly KubernetesConfig _kube;
    private readonly WorkloadRegistry _registry;
    private readonly MeshMetrics _metrics;
    private readonly ILogger _logger;
    private readonly KubernetesApiClient _api;
    private readonly string _node;
    private readonly HashSet<string> _excluded;
    private readonly IReadOnlyList<MeshService> _configServices;
    private readonly ResourceWatchOptions _options;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, ResourceProgress> _progress = new(StringComparer.Ordinal);
    private readonly LogThrottle _failures = new(TimeSpan.FromSeconds(30));
    private readonly HashSet<string> _reported = new(StringComparer.Ordinal);
    private TaskCompletionSource _podsChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile ClusterState _state = ClusterState.Empty;
    private volatile ClusterRegistryEntries? _entries;
    private Task _running = Task.CompletedTask;
    private long _malformed;
    private volatile string? _lastError;
    private DateTimeOffset? _disconnectedSince;
    private int _disposed;

    /// <exception cref="KubernetesSetupException">The API server cannot be reached as configured.</exception>
    public KubernetesRegistrySource(AgentConfig config, WorkloadRegistry registry, MeshMetrics metrics, ILogger<KubernetesRegistrySource> logger,
        Func<string, string?>? environment = null, string serviceAccountDir = KubernetesApiClient.ServiceAccountDir)
    {
        _config = config;
        _kube = config.Discovery.Kubernetes;
        _registry = registry;
        _metrics = metrics;
        _logger = logger;
        _node = string.IsNullOrEmpty(_kube.NodeName) ? config.Node.Name : _kube.NodeName;
        _excluded = new HashSet<string>(_kube.ExcludeNamespaces, StringComparer.Ordinal);
        _configServices = ConfigLoader.Services(config);
        _options = new ResourceWatchOptions(_kube.PageSize, _kube.RequestTimeout, _kube.WatchTimeout, _kube.InitialBackoff, _kube.MaxBackoff);
        _api = KubernetesApiClient.Create(_kube, environment ?? Environment.GetEnvironmentVariable, serviceAccountDir);
        foreach (string resource in new[] { "pods", "services", "endpointslices", "nodes" })
        {
            _progress[resource] = new ResourceProgress();
        }
    }

    public Task Synced => _synced.Task;

    public bool KnowsPods => true;

    public void Start()
    {
        _registry.ReplaceRemote([], new Dictionary<string, IPEndPoint>(), _configServices);
        _metrics.ObserveRegistry(() => (_synced.Task.IsCompleted && Connected(), Revision(), LagSeconds() ?? -1));
        Log.Starting(_logger, _api.Server.ToString(), _node);
        CancellationToken stopping = _stopping.Token;
        _running = Task.WhenAll(
            Task.Run(() => new ResourceWatch<V1Pod, V1PodList>(_api, KubernetesResources.Pods, _options).RunAsync(e => Fold("pods", e, s => s.With(e)), stopping)),
            Task.Run(() => new ResourceWatch<V1Service, V1ServiceList>(_api, KubernetesResources.Services, _options).RunAsync(e => Fold("services", e, s => s.With(e)), stopping)),
            Task.Run(() => new ResourceWatch<V1EndpointSlice, V1EndpointSliceList>(_api, KubernetesResources.EndpointSlices, _options).RunAsync(e => Fold("endpointslices", e, s => s.With(e)), stopping)),
            Task.Run(() => new ResourceWatch<V1Node, V1NodeList>(_api, KubernetesResources.Nodes, _options).RunAsync(e => Fold("nodes", e, s => s.With(e)), stopping)));
    }

    public void Publish(Workload workload)
    {
        // Nothing to publish: the API server already places this node's pods.
    }

    public void Unpublish(string name)
    {
    }

    public Task WithdrawAsync(TimeSpan timeout) => _stopping.CancelAsync();

    public RegistryStatus Status()
    {
        ClusterRegistryEntries? entries = _entries;
        bool connected = Connected();
        return new RegistryStatus
        {
            Source = "kubernetes",
            State = !_synced.Task.IsCompleted ? "syncing" : connected ? "synced" : "disconnected",
            Revision = Revision(),
            LagSeconds = LagSeconds(),
            Nodes = entries?.Peers.Count ?? 0,
            RemoteWorkloads = entries?.RemoteWorkloads.Count ?? 0,
            EntriesRefused = Interlocked.Read(ref _malformed),
            LastError = connected ? null : _lastError,
            DisconnectedSince = connected ? null : _disconnectedSince,
        };
    }

    public async Task<PodFacts?> FindAsync(string @namespace, string name, TimeSpan timeout, CancellationToken cancellationToken)
    {
        string key = $"{@namespace}/{name}";
        var waited = Stopwatch.StartNew();
        while (true)
        {
            Task changed = Volatile.Read(ref _podsChanged).Task;
            if (_state.Pods.TryGetValue(key, out ClusterPod? pod))
            {
                return pod.Facts;
            }

            TimeSpan left = timeout - waited.Elapsed;
            if (left <= TimeSpan.Zero)
            {
                return null;
            }

            try
            {
                await changed.WaitAsync(left, cancellationToken);
            }
            catch (TimeoutException)
            {
                return _state.Pods.TryGetValue(key, out pod) ? pod.Facts : null;
            }
        }
    }

    public IReadOnlyList<PodFacts>? PodsOnThisNode() => _synced.Task.IsCompleted ? _entries?.PodsOnThisNode : null;

    public bool Places(string node, SpiffeId identity) =>
        _synced.Task.IsCompleted && ClusterRegistryView.Places(_state, _config.TrustDomain, _excluded, node, identity);

    /// <summary>One event of one resource: folded into the state, then (once all four are listed) the registry swapped.</summary>
    private void Fold<T>(string resource, ResourceEvent<T> e, Func<ClusterState, ClusterState> fold)
        where T : class
    {
        lock (_gate)
        {
            ResourceProgress progress = _progress[resource];
            if (e.Kind == ResourceEventKind.Failed)
            {
                Failed(resource, progress, e);
                return;
            }

            progress.Version = e.ResourceVersion;
            progress.Confirmed = Stopwatch.GetTimestamp();
            if (!progress.Connected)
            {
                progress.Connected = true;
                if (_disconnectedSince is not null && _progress.Values.All(p => p.Connected))
                {
                    _lastError = null;
                    _disconnectedSince = null;
                    Log.Reconnected(_logger, resource, e.ResourceVersion);
                }
            }

            if (e.Kind is ResourceEventKind.Bookmark or ResourceEventKind.Watching)
            {
                return;
            }

            if (e.Kind == ResourceEventKind.Listed)
            {
                progress.Listed = true;
                Log.Listed(_logger, resource, e.ResourceVersion, e.Items?.Count ?? 0);
            }

            _state = fold(_state);
            if (resource == "pods")
            {
                Interlocked.Exchange(ref _podsChanged, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            }

            if (_progress.Values.Count(p => p.Listed) == ResourceCount)
            {
                Apply();
                if (_synced.TrySetResult())
                {
                    ClusterRegistryEntries entries = _entries!;
                    Log.Synced(_logger, Revision(), entries.Peers.Count, entries.RemoteWorkloads.Count, entries.Services.Count, entries.PodsOnThisNode.Count);
                }
            }
        }
    }

    private void Failed<T>(string resource, ResourceProgress progress, ResourceEvent<T> e)
        where T : class
    {
        string reason = e.Reason ?? "error";
        _lastError = e.Error;
        if (reason is "gone" or "malformed")
        {
            // A re-list: the registry in force stays until the listing is in.
            _metrics.RegistryResynced(reason);
            if (reason == "gone")
            {
                Log.Gone(_logger, resource, e.ResourceVersion, e.Error ?? "");
            }
            else
            {
                Interlocked.Increment(ref _malformed);
                _metrics.RegistryEntriesRefused(1);
                Log.Malformed(_logger, resource, e.Error ?? "");
            }

            return;
        }

        if (progress.Connected || _disconnectedSince is null)
        {
            _disconnectedSince ??= DateTimeOffset.UtcNow;
            _metrics.RegistryResynced(reason);
        }

        progress.Connected = false;
        if (_failures.ShouldLog(out int held))
        {
            if (reason is "unauthorized" or "forbidden")
            {
                Log.Refused(_logger, e.Error ?? "", held);
            }
            else
            {
                Log.Unreachable(_logger, e.Error ?? "", Revision(), held);
            }
        }
    }

    private void Apply()
    {
        ClusterRegistryEntries entries = ClusterRegistryView.Build(_state, _node, _config.TrustDomain, _config.Ports.Tunnel, _excluded);
        _entries = entries;
        // The config file's services first: an address both claim stays the operator's local choice.
        IReadOnlyList<string> conflicts = _registry.ReplaceRemote(entries.RemoteWorkloads, entries.Peers, [.. _configServices, .. entries.Services]);
        foreach (string skipped in entries.Skipped.Concat(conflicts))
        {
            // Once each: the same entry is decided again at every change.
            if (_reported.Count < 10_000 && _reported.Add(skipped))
            {
                Log.Skipped(_logger, skipped);
            }
        }
    }

    private bool Connected() => _progress.Values.All(p => p.Connected);

    /// <summary>The highest resourceVersion seen (opaque to clients, but etcd's revision on every real API server).</summary>
    private long Revision()
    {
        long revision = 0;
        foreach (ResourceProgress progress in _progress.Values)
        {
            if (long.TryParse(progress.Version, NumberStyles.None, CultureInfo.InvariantCulture, out long parsed))
            {
                revision = Math.Max(revision, parsed);
            }
        }

        return revision;
    }

    /// <summary>Seconds since the least recently confirmed resource was last confirmed current (an event or a bookmark).</summary>
    private double? LagSeconds()
    {
        long oldest = long.MaxValue;
        foreach (ResourceProgress progress in _progress.Values)
        {
            oldest = Math.Min(oldest, progress.Confirmed);
        }

        return oldest is 0 or long.MaxValue ? null : Math.Round(Stopwatch.GetElapsedTime(oldest).TotalSeconds, 1);
    }

    /// <summary>Idempotent: the agent disposes it at its stop, the host's container again at the end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        await _running.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _api.Dispose();
        _stopping.Dispose();
    }

    /// <summary>One resource's place in its stream (guarded by the source's lock; read unlocked by status and metrics).</summary>
    private sealed class ResourceProgress
    {
        public volatile string Version = "";
        public long Confirmed;
        public volatile bool Listed;
        public volatile bool Connected;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "registry: kubernetes API server {Server}, this node {Node}: listing pods, services, endpointslices and nodes")]
        public static partial void Starting(ILogger logger, string server, string node);

        [LoggerMessage(EventId = 1201, Level = LogLevel.Information, Message = "registry: kubernetes {Resource} listed at resourceVersion {Version}: {Count} objects; watching")]
        public static partial void Listed(ILogger logger, string resource, string version, int count);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Information, Message = "registry: kubernetes synced at resourceVersion {Revision}: {Nodes} peer nodes, {Workloads} remote workloads, {Services} services, {Local} pods on this node")]
        public static partial void Synced(ILogger logger, long revision, int nodes, int workloads, int services, int local);

        [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "registry: kubernetes {Resource} watch from resourceVersion {Version} is gone (410: {Error}); listing again")]
        public static partial void Gone(ILogger logger, string resource, string version, string error);

        [LoggerMessage(EventId = 1204, Level = LogLevel.Warning, Message = "registry: kubernetes {Resource}: {Error}; listing again")]
        public static partial void Malformed(ILogger logger, string resource, string error);

        [LoggerMessage(EventId = 1205, Level = LogLevel.Warning, Message = "registry: kubernetes API server unreachable ({Error}); serving the registry of resourceVersion {Revision} meanwhile, retrying ({Held} more since the last report)")]
        public static partial void Unreachable(ILogger logger, string error, long revision, int held);

        [LoggerMessage(EventId = 1206, Level = LogLevel.Error, Message = "registry: {Error}; retrying ({Held} more since the last report)")]
        public static partial void Refused(ILogger logger, string error, int held);

        [LoggerMessage(EventId = 1207, Level = LogLevel.Information, Message = "registry: kubernetes API server reachable again ({Resource} current at resourceVersion {Version})")]
        public static partial void Reconnected(ILogger logger, string resource, string version);

        [LoggerMessage(EventId = 1208, Level = LogLevel.Warning, Message = "registry: kubernetes entry ignored: {Entry}")]
        public static partial void Skipped(ILogger logger, string entry);
    }
}
