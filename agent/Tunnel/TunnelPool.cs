using System.Net.Sockets;
using System.Net;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Identity;

namespace NodeMesh.Tunnel;

/// <summary>Opens one authenticated tunnel connection as <paramref name="source"/> to the agent of <paramref name="node"/>.</summary>
internal delegate Task<TunnelConnection> TunnelDialer(SpiffeId source, string node, IPEndPoint peer, CancellationToken cancellationToken);

/// <summary>
/// Pooled tunnel connections.
/// Invariants: connections are keyed by (source identity, peer node); a connection only ever carries flows of
/// its key's identity. A flow reserves a slot on a connection with room (at most maxStreamsPerConnection); a
/// new connection is dialled only when all are full, never more than maxConnectionsPerPeer per key (beyond
/// that, flows share the least loaded one, up to the peer's stream limit, and are refused past it). At most
/// one dial per key is in flight: every flow waiting for it gets its connection or its failure, and a failed
/// dial that took long (a black-holed node) keeps the key in a short, growing backoff in which flows fail at
/// once, so such a node costs one connect timeout, not one per flow; a dial refused at once (a restarting agent)
/// is only coalesced for a moment, so flows reach the peer as soon as it listens again. Each flow waits at most the connect timeout in all. Idle connections
/// are claimed by the reaper only while no flow holds them (see <see cref="TunnelConnection.TryClaimIdle"/>),
/// so a reservation and the reaper never both win; connections going away (GOAWAY) take no new flows and are
/// released when their last flow ends. Flows go to the least loaded connection with room, and while every
/// connection of a key carries two or more flows the pool dials one more in the background, up to one per
/// core: bulk flows then spread over connections, so every core encrypts, not one.
/// </summary>
internal sealed partial class TunnelPool : IAsyncDisposable
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan LastBackoff = TimeSpan.FromSeconds(8);
    private static readonly TimeSpan FastFailureBackoff = TimeSpan.FromMilliseconds(100);

    private readonly ConcurrentDictionary<PoolKey, Entry> _entries = new();
    private readonly TunnelDialer _dialer;
    private readonly TunnelConfig _config;
    private readonly TunnelOptions _options;
    private readonly ILogger _logger;
    private readonly Timer _reaper;
    private readonly CancellationTokenSource _disposing = new();
    private long _opened;

    /// <param name="peerIdentity">The identity the agent of a node must present, by node name.</param>
    public TunnelPool(ICertificateProvider certificates, PeerCertificateVerifier verifier, Func<string, SpiffeId> peerIdentity, TunnelConfig config,
        TunnelOptions options, ILogger<TunnelPool> logger)
        : this(RealDialer(certificates, verifier, peerIdentity, config, options), config, options, logger)
    {
    }

    internal TunnelPool(TunnelDialer dialer, TunnelConfig config, TunnelOptions options, ILogger logger)
    {
        _dialer = dialer;
        _config = config;
        _options = options;
        _logger = logger;
        TimeSpan period = TimeSpan.FromSeconds(Math.Clamp(config.IdleTimeout.TotalSeconds / 4, 0.5, 15));
        _reaper = new Timer(_ => _ = ReapAsync(), null, period, period);
    }

    /// <summary>Connections open now, across all keys (for tests, metrics and the admin view).</summary>
    public int ConnectionCount => _entries.Values.Sum(e => e.Count);

    /// <summary>Connections opened since start.</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _opened);

    private TimeSpan ConnectTimeout => _config.ConnectTimeout;

    /// <summary>Every (source identity, peer node) the pool has dialled, as it is now (for status and the admin API).</summary>
    public IReadOnlyList<Contracts.TunnelPeerState> Snapshot()
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        long ticks = Environment.TickCount64;
        return _entries.Select(pair =>
        {
            TunnelConnection[] alive = pair.Value.Snapshot().Where(c => c.IsAlive).ToArray();
            bool backoff = pair.Value.InBackoff(out string? lastFailure);
            return new Contracts.TunnelPeerState
            {
                Node = pair.Key.Node,
                SourceIdentity = pair.Key.Source.Uri,
                Connections = alive.Length,
                Streams = alive.Sum(c => Math.Max(0, c.ActiveFlows)),
                Dialling = pair.Value.Dialing is { IsCompleted: false },
                LastError = lastFailure,
                RetryAt = backoff ? now + TimeSpan.FromMilliseconds(Math.Max(0, pair.Value.RetryAfterTicks - ticks)) : null,
            };
        }).OrderBy(s => s.Node, StringComparer.Ordinal).ThenBy(s => s.SourceIdentity, StringComparer.Ordinal).ToList();
    }

    /// <summary>A lease on a connection for one flow; disposing it releases the slot. Waits at most the connect timeout.</summary>
    /// <exception cref="IOException">No connection could be had: the dial failed, the key is in backoff, or every connection is full.</exception>
    /// <exception cref="OperationCanceledException">The connect timeout passed, or <paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask<TunnelLease> AcquireAsync(SpiffeId source, string node, IPEndPoint peer, CancellationToken cancellationToken)
    {
        var key = new PoolKey(source, node);
        Entry entry = _entries.GetOrAdd(key, static _ => new Entry());
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(ConnectTimeout);
        while (true)
        {
            TunnelConnection? connection = entry.TryReserve(_config.MaxStreamsPerConnection);
            if (connection is not null)
            {
                SpreadIfBusy(entry, key, peer);
                return new TunnelLease(connection);
            }

            Task<TunnelConnection> dial;
            lock (entry.Gate)
            {
                if (_disposing.IsCancellationRequested)
                {
                    throw new IOException("the agent is shutting down");
                }

                if (entry.Count >= _config.MaxConnectionsPerPeer)
                {
                    connection = entry.ReserveLeastLoaded(_options.MaxAcceptedStreams);
                    return connection is not null
                        ? new TunnelLease(connection)
                        : throw new IOException($"all {entry.Count} tunnel connections as {source} to node {node} carry {_options.MaxAcceptedStreams} flows");
                }

                if (entry.Dialing is null && entry.InBackoff(out string? lastFailure))
                {
                    throw new IOException($"node {node} unreachable, not retried yet (last attempt: {lastFailure})");
                }

                dial = entry.Dialing ??= DialAsync(entry, key, peer);
            }

            try
            {
                await dial.WaitAsync(deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && deadline.IsCancellationRequested)
            {
                throw new OperationCanceledException($"no tunnel to node {node} within the connect timeout ({Contracts.Duration.Format(ConnectTimeout)})");
            }
        }
    }

    /// <summary>Starts one more connection for the key, without waiting, when all of its connections are shared.</summary>
    private void SpreadIfBusy(Entry entry, PoolKey key, IPEndPoint peer)
    {
        int wanted = Math.Min(Environment.ProcessorCount, _config.MaxConnectionsPerPeer);
        if (entry.Count >= wanted || !entry.AllCarryAtLeast(2))
        {
            return;
        }

        lock (entry.Gate)
        {
            if (entry.Dialing is null && entry.Count < wanted && !entry.InBackoff(out _) && !_disposing.IsCancellationRequested)
            {
                // Its failure is logged and starts the backoff; the flows keep the connections they have.
                entry.Dialing = DialAsync(entry, key, peer);
                _ = entry.Dialing.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
        }
    }

    /// <summary>Sends GOAWAY on every pooled connection and waits up to <paramref name="drain"/> for their flows to end.</summary>
    public Task GoAwayAsync(TimeSpan drain, string reason) =>
        Task.WhenAll(_entries.Values.SelectMany(e => e.Snapshot()).Select(c => c.GoAwayAsync(drain, reason)));

    /// <summary>The one dial of a key in flight; its outcome is every waiter's, and a failure starts the backoff.</summary>
    private async Task<TunnelConnection> DialAsync(Entry entry, PoolKey key, IPEndPoint peer)
    {
        await Task.Yield();
        long started = Environment.TickCount64;
        try
        {
            TunnelConnection dialled = await _dialer(key.Source, key.Node, peer, _disposing.Token);
            Interlocked.Increment(ref _opened);
            Log.Opened(_logger, key.Source.Uri, key.Node, peer.ToString());
            lock (entry.Gate)
            {
                entry.Add(dialled);
                entry.Succeeded();
                entry.Dialing = null;
            }

            return dialled;
        }
        catch (Exception ex)
        {
            TimeSpan backoff;
            lock (entry.Gate)
            {
                bool slow = Environment.TickCount64 - started >= Math.Min(1000, (long)ConnectTimeout.TotalMilliseconds / 2) || ex is OperationCanceledException;
                backoff = entry.Failed(ex.Message, slow);
                entry.Dialing = null;
            }

            Log.DialFailed(_logger, key.Source.Uri, key.Node, peer.ToString(), ex.Message, (long)backoff.TotalMilliseconds);
            _options.Metrics?.TunnelDialFailed(ex switch
            {
                // SslStream wraps what fails during the handshake, so a bare socket error is the connect's.
                SocketException => "connect",
                OperationCanceledException or TimeoutException => "timeout",
                _ => "handshake",
            });
            throw;
        }
    }

    private async Task ReapAsync()
    {
        long idleLimit = (long)_config.IdleTimeout.TotalMilliseconds;
        foreach ((PoolKey key, Entry entry) in _entries)
        {
            List<TunnelConnection> removed;
            lock (entry.Gate)
            {
                // Closed ones go; idle ones only if no flow reserved them meanwhile; draining ones once their last flow ends.
                removed = entry.RemoveWhere(c => c.Completion.IsCompleted
                    || (c.IdleMilliseconds >= idleLimit && c.TryClaimIdle())
                    || (!c.IsAlive && c.ActiveFlows == 0 && c.TryClaimIdle()));
            }

            foreach (TunnelConnection connection in removed)
            {
                Log.Released(_logger, key.Source.Uri, key.Node, connection.CloseReason ?? (connection.IsAlive ? "idle" : "going away"));
                await connection.GoAwayAsync(TimeSpan.FromSeconds(1), "idle");
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _disposing.CancelAsync();
        await _reaper.DisposeAsync();
        foreach (Entry entry in _entries.Values)
        {
            List<TunnelConnection> all;
            lock (entry.Gate)
            {
                all = entry.RemoveWhere(static _ => true);
            }

            foreach (TunnelConnection connection in all)
            {
                await connection.DisposeAsync();
            }
        }
    }

    private static TunnelDialer RealDialer(ICertificateProvider certificates, PeerCertificateVerifier verifier, Func<string, SpiffeId> peerIdentity,
        TunnelConfig config, TunnelOptions options) =>
        async (source, node, peer, cancellationToken) =>
        {
            var certificate = await certificates.GetWorkloadCertificateAsync(source, cancellationToken);
            return await TunnelConnection.ConnectAsync(peer, source, certificate, verifier, peerIdentity(node),
                config.ConnectTimeout, cancellationToken, options);
        };

    private readonly record struct PoolKey(SpiffeId Source, string Node);

    /// <summary>The connections of one key. The array is copied on write (under <see cref="Gate"/>) so reservations never lock.</summary>
    private sealed class Entry
    {
        private TunnelConnection[] _connections = [];
        private int _failures;
        private long _retryAfterTicks;
        private string? _lastFailure;

        public Lock Gate { get; } = new();

        public Task<TunnelConnection>? Dialing { get; set; }

        public int Count => Volatile.Read(ref _connections).Count(c => c.IsAlive);

        public TunnelConnection[] Snapshot() => Volatile.Read(ref _connections);

        /// <summary>Reserves a slot on the least loaded connection that has room.</summary>
        public TunnelConnection? TryReserve(int maxFlows)
        {
            while (true)
            {
                TunnelConnection? best = null;
                foreach (TunnelConnection connection in Volatile.Read(ref _connections))
                {
                    int flows = connection.ActiveFlows;
                    if (connection.IsAlive && flows >= 0 && flows < maxFlows && (best is null || flows < best.ActiveFlows))
                    {
                        best = connection;
                    }
                }

                if (best is null || best.TryReserve(maxFlows))
                {
                    return best;
                }
            }
        }

        public bool AllCarryAtLeast(int flows) => Volatile.Read(ref _connections).All(c => !c.IsAlive || c.ActiveFlows >= flows);

        public TunnelConnection? ReserveLeastLoaded(int cap)
        {
            TunnelConnection? best = Volatile.Read(ref _connections).Where(c => c.IsAlive).MinBy(c => c.ActiveFlows);
            return best is not null && best.TryReserve(cap) ? best : null;
        }

        public long RetryAfterTicks => _retryAfterTicks;

        public bool InBackoff(out string? lastFailure)
        {
            lastFailure = _lastFailure;
            return _failures > 0 && Environment.TickCount64 < _retryAfterTicks;
        }

        public TimeSpan Failed(string reason, bool slow)
        {
            _failures++;
            _lastFailure = reason;
            double ms = slow
                ? Math.Min(LastBackoff.TotalMilliseconds, FirstBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(_failures - 1, 10)))
                : FastFailureBackoff.TotalMilliseconds;
            _retryAfterTicks = Environment.TickCount64 + (long)ms;
            return TimeSpan.FromMilliseconds(ms);
        }

        public void Succeeded()
        {
            _failures = 0;
            _lastFailure = null;
        }

        public void Add(TunnelConnection connection) =>
            _connections = [.. _connections.Where(c => !c.Completion.IsCompleted), connection];

        public List<TunnelConnection> RemoveWhere(Func<TunnelConnection, bool> predicate)
        {
            List<TunnelConnection> removed = _connections.Where(predicate).ToList();
            if (removed.Count > 0)
            {
                _connections = _connections.Except(removed).ToArray();
            }

            return removed;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "tunnel opened as {Identity} to node {Node} at {Peer}")]
        public static partial void Opened(ILogger logger, string identity, string node, string peer);

        [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "tunnel as {Identity} to node {Node} released ({Reason})")]
        public static partial void Released(ILogger logger, string identity, string node, string reason);

        [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "tunnel as {Identity} to node {Node} at {Peer} could not be opened: {Error}; new flows fail for {BackoffMs} ms")]
        public static partial void DialFailed(ILogger logger, string identity, string node, string peer, string error, long backoffMs);
    }
}

/// <summary>One flow's hold on a pooled tunnel connection.</summary>
internal readonly struct TunnelLease : IDisposable
{
    public TunnelLease(TunnelConnection connection) => Connection = connection;

    public TunnelConnection Connection { get; }

    public void Dispose() => Connection.Release();
}
