using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Nerdbank.Streams;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>The pool with a dialler of the test's making: sharing of dials, backoff, bounds and idle release.</summary>
public sealed class TunnelPoolTests : IAsyncLifetime
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Node2 = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/node.node2");
    private static readonly IPEndPoint Peer = IPEndPoint.Parse("10.0.0.2:15008");
    private readonly List<IAsyncDisposable> _owned = [];
    private int _dials;

    public Task InitializeAsync() => Task.CompletedTask;

    private TunnelPool Pool(TunnelDialer dialer, TunnelConfig? config = null, TunnelOptions? options = null)
    {
        var pool = new TunnelPool(dialer, config ?? new TunnelConfig { ConnectTimeout = TimeSpan.FromSeconds(1) }, options ?? new TunnelOptions(), NullLogger.Instance);
        _owned.Add(pool);
        return pool;
    }

    /// <summary>A dial that takes <paramref name="delay"/>, then yields a connection whose far end answers nothing but keeps reading.</summary>
    private TunnelDialer Working(TimeSpan delay, List<RawTunnelPeer>? far = null) => async (source, node, peer, cancellationToken) =>
    {
        Interlocked.Increment(ref _dials);
        await Task.Delay(delay, cancellationToken);
        (Stream near, Stream other) = FullDuplexStream.CreatePair();
        var raw = new RawTunnelPeer(other);
        _owned.Add(raw);
        lock (_owned)
        {
            far?.Add(raw);
        }

        _ = Task.Run(async () =>
        {
            while (await raw.ReadAsync() is not null)
            {
            }
        }, CancellationToken.None);
        var connection = new TunnelConnection(near, null, dialler: true, source, Node2, new TunnelOptions());
        _owned.Add(connection);
        return connection;
    };

    /// <summary>A black-holed peer: the dial waits out its connect timeout, as a real one would, and fails.</summary>
    private TunnelDialer BlackHoled(TimeSpan connectTimeout, TaskCompletionSource? failed = null) => async (_, _, _, cancellationToken) =>
    {
        Interlocked.Increment(ref _dials);
        try
        {
            await Task.Delay(connectTimeout, cancellationToken);
            throw new SocketException((int)SocketError.TimedOut);
        }
        finally
        {
            failed?.TrySetResult();
        }
    };

    [Fact]
    public async Task FiftyFlows_AgainstABlackHoledPeer_ShareOneDial_AndAllFailWithinTwiceTheConnectTimeout()
    {
        var dialFailed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        TunnelPool pool = Pool(BlackHoled(TimeSpan.FromSeconds(1), dialFailed));
        var watch = Stopwatch.StartNew();
        Task<Exception?>[] flows = Enumerable.Range(0, 50).Select(_ => FailureOf(pool)).ToArray();
        Exception?[] failures = await Task.WhenAll(flows);
        TimeSpan elapsed = watch.Elapsed;
        Assert.All(failures, f => Assert.NotNull(f));
        Assert.True(elapsed < TimeSpan.FromSeconds(2), $"50 flows took {elapsed.TotalSeconds:F2} s to fail");
        Assert.Equal(1, _dials);

        // In the backoff that follows (1 s after the dial failed), a flow fails at once and dials nothing.
        await dialFailed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        watch.Restart();
        Exception? during = await FailureOf(pool);
        Assert.IsType<IOException>(during);
        Assert.Contains("not retried yet", during.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromMilliseconds(200), $"a flow in backoff took {watch.ElapsedMilliseconds} ms");
        Assert.Equal(1, _dials);

        // After the backoff the pool tries again.
        await Task.Delay(TimeSpan.FromMilliseconds(1200));
        Assert.NotNull(await FailureOf(pool));
        Assert.Equal(2, _dials);
    }

    [Fact]
    public async Task ADialRefusedAtOnce_IsCoalescedOnlyForAMoment_SoARestartedPeerIsReachedAtOnce()
    {
        bool listening = false;
        TunnelDialer working = Working(TimeSpan.Zero);
        TunnelPool pool = Pool((source, node, peer, ct) =>
            Volatile.Read(ref listening) ? working(source, node, peer, ct) : throw new SocketException((int)SocketError.ConnectionRefused));
        Assert.IsType<SocketException>(await FailureOf(pool));
        Volatile.Write(ref listening, true);
        await Task.Delay(150);
        Assert.Null(await FailureOf(pool));
    }

    [Fact]
    public async Task FiftyFlows_WaitingForOneDial_AllGetTheSameConnection()
    {
        TunnelPool pool = Pool(Working(TimeSpan.FromMilliseconds(200)));
        TunnelLease[] leases = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => pool.AcquireAsync(Web, "node2", Peer, default).AsTask()));

        // Every waiter got the one dial's connection (a companion may be dialled afterwards to spread later flows).
        Assert.Single(leases.Select(l => l.Connection).Distinct());
        Assert.InRange(_dials, 1, Math.Min(Environment.ProcessorCount, 8));
        Assert.Equal(50, leases[0].Connection.ActiveFlows);
        foreach (TunnelLease lease in leases)
        {
            lease.Dispose();
        }

        Assert.Equal(0, leases[0].Connection.ActiveFlows);
    }

    [Fact]
    public async Task Bounds_NewConnectionsUpToThePerPeerLimit_ThenSharing_ThenRefusalAtThePeersStreamLimit()
    {
        var config = new TunnelConfig { MaxStreamsPerConnection = 2, MaxConnectionsPerPeer = 2, ConnectTimeout = TimeSpan.FromSeconds(1) };
        TunnelPool pool = Pool(Working(TimeSpan.Zero), config, new TunnelOptions { MaxAcceptedStreams = 3 });
        var leases = new List<TunnelLease>();
        for (int i = 0; i < 4; i++)
        {
            leases.Add(await pool.AcquireAsync(Web, "node2", Peer, default));
        }

        Assert.Equal(2, _dials);
        Assert.Equal(2, pool.ConnectionCount);

        // Both full at maxStreamsPerConnection: flows share the least loaded, up to the peer's limit (3 each).
        leases.Add(await pool.AcquireAsync(Web, "node2", Peer, default));
        leases.Add(await pool.AcquireAsync(Web, "node2", Peer, default));
        Assert.Equal(2, _dials);
        Assert.All(leases.GroupBy(l => l.Connection), g => Assert.Equal(3, g.Count()));
        IOException full = await Assert.ThrowsAsync<IOException>(async () => await pool.AcquireAsync(Web, "node2", Peer, default));
        Assert.Contains("carry 3 flows", full.Message, StringComparison.Ordinal);

        // Another identity is another key: its own connections.
        using TunnelLease other = await pool.AcquireAsync(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/api"), "node2", Peer, default);
        Assert.Equal(3, _dials);
        leases.ForEach(l => l.Dispose());
    }

    [Fact]
    public async Task SharedConnections_GetACompanion_UpToOnePerCore_AndNewFlowsTakeTheLeastLoaded()
    {
        TunnelPool pool = Pool(Working(TimeSpan.Zero), new TunnelConfig { ConnectTimeout = TimeSpan.FromSeconds(1), MaxConnectionsPerPeer = 8 });
        var leases = new List<TunnelLease> { await pool.AcquireAsync(Web, "node2", Peer, default), await pool.AcquireAsync(Web, "node2", Peer, default) };
        int wanted = Math.Min(Environment.ProcessorCount, 8);
        var watch = Stopwatch.StartNew();
        while (pool.ConnectionCount < Math.Min(wanted, 2) && watch.Elapsed < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(10);
        }

        if (wanted >= 2)
        {
            // The second flow shared the first connection, so a companion was dialled without making it wait.
            Assert.Equal(2, pool.ConnectionCount);
            TunnelLease third = await pool.AcquireAsync(Web, "node2", Peer, default);
            Assert.NotSame(leases[0].Connection, third.Connection);
            leases.Add(third);
        }

        for (int i = 0; i < 20; i++)
        {
            leases.Add(await pool.AcquireAsync(Web, "node2", Peer, default));
        }

        Assert.True(pool.ConnectionCount <= wanted, $"{pool.ConnectionCount} connections for {wanted} cores");
        leases.ForEach(l => l.Dispose());
    }

    [Fact]
    public async Task IdleConnections_AreReleased_WithAGoAway_AndBusyOnesAreKept()
    {
        var far = new List<RawTunnelPeer>();
        TunnelPool pool = Pool(Working(TimeSpan.Zero), new TunnelConfig { IdleTimeout = TimeSpan.FromSeconds(1), ConnectTimeout = TimeSpan.FromSeconds(1), MaxStreamsPerConnection = 1 });
        TunnelLease idle = await pool.AcquireAsync(Web, "node2", Peer, default);
        using TunnelLease busy = await pool.AcquireAsync(Web, "node2", Peer, default);
        Assert.NotSame(idle.Connection, busy.Connection);
        idle.Dispose();
        await idle.Connection.Completion.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(1, pool.ConnectionCount);
        Assert.True(busy.Connection.IsAlive);
        Assert.StartsWith("idle", idle.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheReaperAndAReservation_NeverBothWin()
    {
        TunnelPool pool = Pool(Working(TimeSpan.Zero));
        TunnelLease lease = await pool.AcquireAsync(Web, "node2", Peer, default);
        TunnelConnection connection = lease.Connection;
        Assert.False(connection.TryClaimIdle());
        lease.Dispose();
        Assert.True(connection.TryClaimIdle());
        Assert.False(connection.TryReserve(100));
    }

    private static async Task<Exception?> FailureOf(TunnelPool pool)
    {
        try
        {
            using TunnelLease lease = await pool.AcquireAsync(Web, "node2", Peer, default);
            return null;
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
        {
            return ex;
        }
    }

    public async Task DisposeAsync()
    {
        foreach (IAsyncDisposable owned in _owned.ToArray())
        {
            await owned.DisposeAsync();
        }
    }
}
