using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Identity;

namespace NodeMesh.Tunnel;

/// <summary>
/// Pooled tunnel connections.
/// Invariants: connections are keyed by (source identity, peer node); a connection only ever carries flows of
/// its key's identity. A flow reserves a slot on a connection with room (at most maxStreamsPerConnection);
/// a new connection is dialled only when all are full, and never more than maxConnectionsPerPeer per key
/// (beyond that, flows share the least loaded one). Connections with no flows for idleTimeout are closed by
/// the reaper; dead connections are dropped on the next lookup.
/// </summary>
internal sealed partial class TunnelPool : IAsyncDisposable
{
    private readonly ConcurrentDictionary<PoolKey, Entry> _entries = new();
    private readonly ICertificateProvider _certificates;
    private readonly PeerCertificateVerifier _verifier;
    private readonly Func<string, SpiffeId> _peerIdentity;
    private readonly TunnelConfig _config;
    private readonly ILogger _logger;
    private readonly Timer _reaper;

    /// <param name="peerIdentity">The identity the agent of a node must present, by node name.</param>
    public TunnelPool(ICertificateProvider certificates, PeerCertificateVerifier verifier, Func<string, SpiffeId> peerIdentity, TunnelConfig config, ILogger<TunnelPool> logger)
    {
        _certificates = certificates;
        _verifier = verifier;
        _peerIdentity = peerIdentity;
        _config = config;
        _logger = logger;
        TimeSpan period = TimeSpan.FromSeconds(Math.Clamp(config.IdleTimeoutSeconds / 4.0, 0.5, 15));
        _reaper = new Timer(_ => _ = ReapAsync(), null, period, period);
    }

    /// <summary>Connections open now, across all keys (for tests, metrics and the admin view).</summary>
    public int ConnectionCount => _entries.Values.Sum(e => e.Count);

    /// <summary>Connections opened since start.</summary>
    public long ConnectionsOpened => Interlocked.Read(ref _opened);

    private long _opened;

    /// <summary>A lease on a connection for one flow; disposing it releases the slot.</summary>
    public async ValueTask<TunnelLease> AcquireAsync(SpiffeId source, string node, IPEndPoint peer, CancellationToken cancellationToken)
    {
        Entry entry = _entries.GetOrAdd(new PoolKey(source, node), static _ => new Entry());
        while (true)
        {
            TunnelConnection? connection = entry.TryReserve(_config.MaxStreamsPerConnection);
            if (connection is not null)
            {
                return new TunnelLease(connection);
            }

            await entry.DialLock.WaitAsync(cancellationToken);
            try
            {
                // Another flow may have dialled while this one waited.
                connection = entry.TryReserve(_config.MaxStreamsPerConnection);
                if (connection is not null)
                {
                    return new TunnelLease(connection);
                }

                if (entry.Count >= _config.MaxConnectionsPerPeer)
                {
                    connection = entry.ReserveLeastLoaded();
                    if (connection is not null)
                    {
                        return new TunnelLease(connection);
                    }
                }

                var certificate = await _certificates.GetWorkloadCertificateAsync(source, cancellationToken);
                TunnelConnection dialled = await TunnelConnection.ConnectAsync(
                    peer, source, certificate, _verifier, _peerIdentity(node), TimeSpan.FromSeconds(_config.ConnectTimeoutSeconds), cancellationToken);
                Interlocked.Increment(ref _opened);
                Log.Opened(_logger, source.Uri, node, peer.ToString());
                entry.Add(dialled);
                if (dialled.TryReserve(_config.MaxStreamsPerConnection))
                {
                    return new TunnelLease(dialled);
                }
            }
            finally
            {
                entry.DialLock.Release();
            }
        }
    }

    private async Task ReapAsync()
    {
        long idleLimit = _config.IdleTimeoutSeconds * 1000L;
        foreach ((PoolKey key, Entry entry) in _entries)
        {
            foreach (TunnelConnection connection in entry.RemoveWhere(c => !c.IsAlive || c.IdleMilliseconds >= idleLimit))
            {
                Log.Released(_logger, key.Source.Uri, key.Node, connection.IsAlive ? "idle" : "closed");
                await connection.DisposeAsync();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _reaper.DisposeAsync();
        foreach (Entry entry in _entries.Values)
        {
            foreach (TunnelConnection connection in entry.RemoveWhere(static _ => true))
            {
                await connection.DisposeAsync();
            }
        }
    }

    private readonly record struct PoolKey(SpiffeId Source, string Node);

    /// <summary>The connections of one key; the list is copied on write so reservations never lock.</summary>
    private sealed class Entry
    {
        private readonly Lock _gate = new();
        private TunnelConnection[] _connections = [];

        public SemaphoreSlim DialLock { get; } = new(1, 1);

        public int Count => Volatile.Read(ref _connections).Length;

        public TunnelConnection? TryReserve(int maxFlows)
        {
            foreach (TunnelConnection connection in Volatile.Read(ref _connections))
            {
                if (connection.TryReserve(maxFlows))
                {
                    return connection;
                }
            }

            return null;
        }

        public TunnelConnection? ReserveLeastLoaded()
        {
            TunnelConnection? best = Volatile.Read(ref _connections).Where(c => c.IsAlive).MinBy(c => c.ActiveFlows);
            return best is not null && best.TryReserve(int.MaxValue) ? best : null;
        }

        public void Add(TunnelConnection connection)
        {
            lock (_gate)
            {
                _connections = [.. _connections.Where(c => c.IsAlive), connection];
            }
        }

        public List<TunnelConnection> RemoveWhere(Func<TunnelConnection, bool> predicate)
        {
            lock (_gate)
            {
                List<TunnelConnection> removed = _connections.Where(predicate).ToList();
                if (removed.Count > 0)
                {
                    _connections = _connections.Except(removed).ToArray();
                }

                return removed;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 300, Level = LogLevel.Information, Message = "tunnel opened as {Identity} to node {Node} at {Peer}")]
        public static partial void Opened(ILogger logger, string identity, string node, string peer);

        [LoggerMessage(EventId = 301, Level = LogLevel.Debug, Message = "tunnel as {Identity} to node {Node} released ({Reason})")]
        public static partial void Released(ILogger logger, string identity, string node, string reason);
    }
}

/// <summary>One flow's hold on a pooled tunnel connection.</summary>
internal readonly struct TunnelLease : IDisposable
{
    public TunnelLease(TunnelConnection connection) => Connection = connection;

    public TunnelConnection Connection { get; }

    public void Dispose() => Connection.Release();
}
