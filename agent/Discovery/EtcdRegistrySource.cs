using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Sockets;
using NodeMesh.State;
using NodeMesh.Telemetry;

namespace NodeMesh.Discovery;

/// <summary>
/// discovery.source "etcd". Two loops over one <see cref="EtcdStore"/>:
/// <list type="bullet">
/// <item>publish: this node and its workloads under PREFIX/nodes/NODE/, bound to a lease kept alive at a third
/// of its TTL, so a crashed node's entries expire; a lost lease is granted again and everything put again, and
/// what an earlier run of this node left there that is no longer here is deleted;</item>
/// <item>watch: the whole prefix listed once, then watched from the next revision; resumed from the last
/// revision seen after a disconnect, listed again after a compaction. Each change is folded into a
/// <see cref="RegistryState"/> and handed to the registry in one swap.</item>
/// </list>
/// While etcd is unreachable the last registry stays in force (status and metrics say so); the data path
/// never falls back to plaintext for what it does not know (mesh.cidrs).
/// </summary>
internal sealed partial class EtcdRegistrySource : IRegistrySource
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(5);

    private readonly AgentConfig _config;
    private readonly EtcdConfig _etcd;
    private readonly WorkloadRegistry _registry;
    private readonly MeshMetrics _metrics;
    private readonly ILogger _logger;
    private readonly EtcdStore _store;
    private readonly ConcurrentDictionary<string, byte[]> _desired = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _changed = new(0, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly LogThrottle _watchErrors = new(TimeSpan.FromSeconds(30));
    private readonly LogThrottle _publishErrors = new(TimeSpan.FromSeconds(30));
    private readonly HashSet<string> _reportedConflicts = new(StringComparer.Ordinal);
    private readonly string _nodePrefix;
    private readonly IReadOnlyList<MeshService> _configServices;
    private Task _watching = Task.CompletedTask;
    private Task _publishing = Task.CompletedTask;
    private volatile RegistryState _state;
    private long _lease;
    private long _entriesRefused;
    private long _lastCurrent;
    private volatile bool _connected;
    private int _disposed;
    private volatile bool _published;
    private volatile string? _lastError;
    private DateTimeOffset? _disconnectedSince;

    public EtcdRegistrySource(AgentConfig config, WorkloadRegistry registry, MeshMetrics metrics, ILogger<EtcdRegistrySource> logger)
    {
        _config = config;
        _etcd = config.Discovery.Etcd;
        _registry = registry;
        _metrics = metrics;
        _logger = logger;
        _state = RegistryState.Empty(_etcd.Prefix, config.TrustDomain);
        _nodePrefix = RegistryKey.NodePrefix(_etcd.Prefix, config.Node.Name);
        _configServices = ConfigLoader.Services(config);
        _store = new EtcdStore(Options(_etcd));
        _desired[RegistryKey.ForNode(_etcd.Prefix, config.Node.Name)] = JsonSerializer.SerializeToUtf8Bytes(new NodeRecord
        {
            Name = config.Node.Name,
            Address = $"{config.Node.Address}:{config.Ports.Tunnel}",
            Transports = ["tls"],
        }, RegistryJsonContext.Default.NodeRecord);
    }

    public Task Synced => _synced.Task;

    /// <summary>The etcd client settings of discovery.etcd; the password is read from its file now.</summary>
    /// <exception cref="IOException">The password file cannot be read.</exception>
    internal static EtcdOptions Options(EtcdConfig etcd) => new()
    {
        Endpoints = etcd.Endpoints,
        Username = etcd.Username,
        Password = etcd.PasswordFile.Length > 0 ? File.ReadAllText(etcd.PasswordFile).TrimEnd('\r', '\n') : "",
        CaFile = etcd.CaFile,
        CertFile = etcd.CertFile,
        KeyFile = etcd.KeyFile,
        DialTimeout = etcd.DialTimeout,
        RequestTimeout = etcd.RequestTimeout,
    };

    public void Start()
    {
        _registry.ReplaceRemote([], new Dictionary<string, IPEndPoint>(), _configServices);
        _metrics.ObserveRegistry(() => (_synced.Task.IsCompleted && _connected, _state.Revision, LagSeconds() ?? -1));
        _watching = Task.Run(() => WatchLoopAsync(_stopping.Token));
        _publishing = Task.Run(() => PublishLoopAsync(_stopping.Token));
    }

    public void Publish(Workload workload)
    {
        _desired[RegistryKey.ForWorkload(_etcd.Prefix, _config.Node.Name, workload.Name)] = JsonSerializer.SerializeToUtf8Bytes(new WorkloadRecord
        {
            Name = workload.Name,
            Node = _config.Node.Name,
            Ips = [workload.Ip.ToString()],
            Identity = workload.Identity.Uri,
            Mode = workload.Mode == PeerMode.Strict ? "STRICT" : "PERMISSIVE",
            Labels = workload.Labels,
        }, RegistryJsonContext.Default.WorkloadRecord);
        Wake();
    }

    public void Unpublish(string name)
    {
        _desired.TryRemove(RegistryKey.ForWorkload(_etcd.Prefix, _config.Node.Name, name), out _);
        Wake();
    }

    public async Task WithdrawAsync(TimeSpan timeout)
    {
        long lease = Interlocked.Read(ref _lease);
        if (Volatile.Read(ref _disposed) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        if (lease == 0)
        {
            return;
        }

        try
        {
            using var deadline = new CancellationTokenSource(timeout);
            await _store.RevokeLeaseAsync(lease, deadline.Token);
            Log.Withdrawn(_logger, _config.Node.Name);
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException or HttpRequestException or IOException)
        {
            // The lease expires on its own within its TTL.
            Log.WithdrawFailed(_logger, Contracts.Duration.Format(_etcd.LeaseTtl), ex.Message);
        }
    }

    public RegistryStatus Status()
    {
        RegistryState state = _state;
        return new RegistryStatus
        {
            Source = "etcd",
            State = !_synced.Task.IsCompleted ? "syncing" : _connected ? "synced" : "disconnected",
            Revision = state.Revision,
            LagSeconds = LagSeconds(),
            Nodes = state.Nodes.Count(n => n.Name != _config.Node.Name),
            RemoteWorkloads = state.Workloads.Count(w => w.Node != _config.Node.Name),
            EntriesRefused = Interlocked.Read(ref _entriesRefused),
            Published = _published,
            LastError = _lastError,
            DisconnectedSince = _connected ? null : _disconnectedSince,
        };
    }

    private double? LagSeconds()
    {
        long last = Interlocked.Read(ref _lastCurrent);
        return last == 0 ? null : Math.Round(Stopwatch.GetElapsedTime(last).TotalSeconds, 1);
    }

    private void Wake()
    {
        try
        {
            if (_changed.CurrentCount == 0)
            {
                _changed.Release();
            }
        }
        catch (SemaphoreFullException)
        {
            // Already signalled.
        }
    }

    private async Task WatchLoopAsync(CancellationToken stopping)
    {
        TimeSpan backoff = TimeSpan.Zero;
        bool listed = false;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (!listed)
                {
                    StoreListing listing = await _store.ListAsync(_etcd.Prefix, stopping);
                    var refused = new List<string>();
                    RegistryState state = _state.Listed(listing.Entries, listing.Revision, refused);
                    Refused(refused);
                    Apply(state);
                    listed = true;
                    Current();
                    Log.Listed(_logger, listing.Revision, state.Nodes.Count(), state.Workloads.Count());
                    _synced.TrySetResult();
                }

                await foreach (StoreChanges changes in _store.WatchAsync(_etcd.Prefix, _state.Revision + 1, stopping))
                {
                    RegistryState state = _state;
                    var refused = new List<string>();
                    foreach (StoreEvent change in changes.Events)
                    {
                        string? error = null;
                        state = change.Kind == StoreEventKind.Put
                            ? state.Put(change.Key, change.Value.Span, change.Revision, out error)
                            : state.Delete(change.Key, change.Revision);
                        if (error is not null)
                        {
                            refused.Add(error);
                        }
                    }

                    Refused(refused);
                    Apply(changes.Events.Count > 0 ? state.At(changes.Revision) : _state.At(changes.Revision), changed: changes.Events.Count > 0);
                    Current();
                    backoff = TimeSpan.Zero;
                }
            }
            catch (StoreCompactedException ex)
            {
                // The revisions after ours are gone: list again (the registry in force stays until then).
                Log.Compacted(_logger, _state.Revision, ex.CompactRevision);
                _metrics.RegistryResynced("compacted");
                listed = false;
            }
            catch (Exception ex) when (!stopping.IsCancellationRequested && IsStoreFailure(ex))
            {
                Disconnected(ex.Message, _watchErrors, "watch");
                backoff = NextBackoff(backoff);
                await Task.Delay(backoff, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task PublishLoopAsync(CancellationToken stopping)
    {
        TimeSpan backoff = TimeSpan.Zero;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                long lease = await _store.GrantLeaseAsync(_etcd.LeaseTtl, stopping);
                Interlocked.Exchange(ref _lease, lease);

                // Whatever a previous run of this node left and is no longer here goes (a workload removed while the agent was down).
                StoreListing mine = await _store.ListAsync(_nodePrefix, stopping);
                var published = new Dictionary<string, byte[]>(StringComparer.Ordinal);
                foreach ((string key, _) in mine.Entries)
                {
                    if (!_desired.ContainsKey(key))
                    {
                        await _store.DeleteAsync(key, stopping);
                    }
                }

                TimeSpan interval = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(500).Ticks, _etcd.LeaseTtl.Ticks / 3));
                using var keeping = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                Task keepAlive = _store.KeepAliveAsync(lease, interval, keeping.Token);
                try
                {
                    while (true)
                    {
                        await SyncAsync(lease, published, stopping);
                        if (!_published)
                        {
                            Log.Published(_logger, _config.Node.Name, published.Count - 1, lease);
                        }

                        _published = true;
                        backoff = TimeSpan.Zero;
                        // The wait is cancelled when the lease goes first: an abandoned waiter would take the next signal.
                        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                        Task woken = _changed.WaitAsync(waiting.Token);
                        if (await Task.WhenAny(keepAlive, woken) == keepAlive)
                        {
                            await waiting.CancelAsync();
                            await woken.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                            await keepAlive;
                            _published = false;
                            Log.LeaseLost(_logger, lease);
                            break;
                        }

                        await woken;
                    }
                }
                finally
                {
                    await keeping.CancelAsync();
                    await keepAlive.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
            }
            catch (Exception ex) when (!stopping.IsCancellationRequested && IsStoreFailure(ex))
            {
                _published = false;
                _lastError = ex.Message;
                if (_publishErrors.ShouldLog(out int held))
                {
                    Log.PublishFailed(_logger, ex.Message, held);
                }

                backoff = NextBackoff(backoff);
                await Task.Delay(backoff, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>Puts what changed since <paramref name="published"/> under <paramref name="lease"/> and deletes what went.</summary>
    private async Task SyncAsync(long lease, Dictionary<string, byte[]> published, CancellationToken stopping)
    {
        foreach ((string key, byte[] value) in _desired.ToArray())
        {
            if (!published.TryGetValue(key, out byte[]? had) || !had.AsSpan().SequenceEqual(value))
            {
                await _store.PutAsync(key, value, lease, stopping);
                published[key] = value;
            }
        }

        foreach (string key in published.Keys.Where(k => !_desired.ContainsKey(k)).ToList())
        {
            await _store.DeleteAsync(key, stopping);
            published.Remove(key);
        }
    }

    private void Apply(RegistryState state, bool changed = true)
    {
        _state = state;
        if (!changed)
        {
            return;
        }

        string me = _config.Node.Name;
        var peers = new Dictionary<string, IPEndPoint>(StringComparer.Ordinal);
        foreach (MeshNode node in state.Nodes.Where(n => n.Name != me))
        {
            peers[node.Name] = node.Tunnel;
        }

        // The config file's services first: an address both claim stays the operator's local choice.
        IReadOnlyList<string> conflicts = _registry.ReplaceRemote(state.Workloads.Where(w => w.Node != me), peers, [.. _configServices, .. state.Services]);
        foreach (string conflict in conflicts)
        {
            if (_reportedConflicts.Add(conflict))
            {
                Log.Conflict(_logger, conflict);
            }
        }
    }

    private void Refused(List<string> refused)
    {
        if (refused.Count == 0)
        {
            return;
        }

        Interlocked.Add(ref _entriesRefused, refused.Count);
        _metrics.RegistryEntriesRefused(refused.Count);
        foreach (string error in refused.Take(10))
        {
            Log.EntryRefused(_logger, error);
        }
    }

    private void Current()
    {
        Interlocked.Exchange(ref _lastCurrent, Stopwatch.GetTimestamp());
        if (!_connected)
        {
            if (_disconnectedSince is not null)
            {
                Log.Reconnected(_logger, _state.Revision);
            }

            _connected = true;
            _lastError = null;
        }
    }

    private void Disconnected(string error, LogThrottle throttle, string what)
    {
        if (_connected || _disconnectedSince is null)
        {
            _disconnectedSince = DateTimeOffset.UtcNow;
            _metrics.RegistryResynced("disconnected");
        }

        _connected = false;
        _lastError = error;
        if (throttle.ShouldLog(out int held))
        {
            Log.StoreUnreachable(_logger, what, error, _state.Revision, held);
        }
    }

    /// <summary>200 ms, doubling while failures go on, at most 5 s.</summary>
    private static TimeSpan NextBackoff(TimeSpan current) =>
        current == TimeSpan.Zero ? FirstBackoff : TimeSpan.FromTicks(Math.Min(current.Ticks * 2, MaxBackoff.Ticks));

    internal static bool IsStoreFailure(Exception ex) =>
        ex is RpcException or HttpRequestException or IOException or TimeoutException or InvalidOperationException
            or System.Security.Authentication.AuthenticationException or OperationCanceledException;

    /// <summary>Idempotent: the agent disposes it at its stop, the host's container again at the end.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync();
        await Task.WhenAll(_watching, _publishing).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _store.DisposeAsync();
        _stopping.Dispose();
        _changed.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1100, Level = LogLevel.Information, Message = "registry: etcd listed at revision {Revision}: {Nodes} nodes, {Workloads} workloads; watching")]
        public static partial void Listed(ILogger logger, long revision, int nodes, int workloads);

        [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "registry: etcd {What} failed ({Error}); serving the registry of revision {Revision} meanwhile, retrying ({Held} more since the last report)")]
        public static partial void StoreUnreachable(ILogger logger, string what, string error, long revision, int held);

        [LoggerMessage(EventId = 1102, Level = LogLevel.Information, Message = "registry: etcd reachable again, current at revision {Revision}")]
        public static partial void Reconnected(ILogger logger, long revision);

        [LoggerMessage(EventId = 1103, Level = LogLevel.Warning, Message = "registry: etcd compacted past revision {Revision} (compacted to {Compacted}); listing again")]
        public static partial void Compacted(ILogger logger, long revision, long compacted);

        [LoggerMessage(EventId = 1104, Level = LogLevel.Warning, Message = "registry: entry refused: {Error}")]
        public static partial void EntryRefused(ILogger logger, string error);

        [LoggerMessage(EventId = 1105, Level = LogLevel.Warning, Message = "registry: entry ignored: {Conflict}")]
        public static partial void Conflict(ILogger logger, string conflict);

        [LoggerMessage(EventId = 1106, Level = LogLevel.Information, Message = "registry: node {Node} and {Workloads} workloads published in etcd under lease {Lease:x}")]
        public static partial void Published(ILogger logger, string node, int workloads, long lease);

        [LoggerMessage(EventId = 1107, Level = LogLevel.Warning, Message = "registry: lease {Lease:x} expired in etcd; publishing again under a new one")]
        public static partial void LeaseLost(ILogger logger, long lease);

        [LoggerMessage(EventId = 1108, Level = LogLevel.Warning, Message = "registry: publishing to etcd failed ({Error}); retrying ({Held} more since the last report)")]
        public static partial void PublishFailed(ILogger logger, string error, int held);

        [LoggerMessage(EventId = 1109, Level = LogLevel.Information, Message = "registry: node {Node} withdrawn from etcd (lease revoked)")]
        public static partial void Withdrawn(ILogger logger, string node);

        [LoggerMessage(EventId = 1110, Level = LogLevel.Warning, Message = "registry: could not withdraw from etcd ({Error}); this node's entries expire within {Ttl}")]
        public static partial void WithdrawFailed(ILogger logger, string ttl, string error);
    }
}
