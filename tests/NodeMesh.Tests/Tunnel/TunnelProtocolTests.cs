using System.Buffers.Binary;
using System.Security.Cryptography;
using Nerdbank.Streams;
using NodeMesh.Identity;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>
/// The tunnel protocol against a peer that speaks it by hand (no TLS, no sockets: an in-memory duplex stream):
/// what a buggy or hostile peer gets for floods, credit abuse, unknown streams and frames, and how GOAWAY drains.
/// </summary>
public sealed class TunnelProtocolTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private static readonly SpiffeId Node = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/node.node2");
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private readonly List<IAsyncDisposable> _owned = [];

    public Task InitializeAsync() => Task.CompletedTask;

    private (TunnelConnection Listener, RawTunnelPeer Peer) ListenerWithRawPeer(TunnelOptions? options = null)
    {
        (Stream near, Stream far) = FullDuplexStream.CreatePair();
        var listener = new TunnelConnection(near, null, dialler: false, Node, Web, options ?? new TunnelOptions());
        var peer = new RawTunnelPeer(far);
        _owned.Add(listener);
        _owned.Add(peer);
        return (listener, peer);
    }

    /// <param name="diallerTransport">Wraps the dialler's side of the duplex stream (to hold its writes, say).</param>
    private (TunnelConnection Dialler, TunnelConnection Listener) Pair(TunnelOptions? options = null, Func<Stream, Stream>? diallerTransport = null)
    {
        (Stream a, Stream b) = FullDuplexStream.CreatePair();
        var dialler = new TunnelConnection(diallerTransport?.Invoke(a) ?? a, null, dialler: true, Web, Node, options ?? new TunnelOptions());
        var listener = new TunnelConnection(b, null, dialler: false, Node, Web, options ?? new TunnelOptions());
        _owned.Add(dialler);
        _owned.Add(listener);
        return (dialler, listener);
    }

    private static async Task AssertGoneAwayAsync(TunnelConnection connection, RawTunnelPeer peer, TunnelError code, string reasonPart)
    {
        RawFrame? goAway = await peer.ReadUntilGoAwayAsync().WaitAsync(Patience);
        Assert.NotNull(goAway);
        Assert.Equal(code, goAway.GoAwayCode);
        Assert.Contains(reasonPart, goAway.GoAwayReason, StringComparison.Ordinal);
        await connection.Completion.WaitAsync(Patience);
        Assert.Contains(reasonPart, connection.CloseReason, StringComparison.Ordinal);
        Assert.Null(await peer.ReadAsync().WaitAsync(Patience));
    }

    [Fact]
    public async Task UnknownFrameType_EndsTheConnection_WithAProtocolGoAwayNamingIt()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer();
        await peer.SendAsync(42, 0, ReadOnlyMemory<byte>.Empty);
        await AssertGoneAwayAsync(listener, peer, TunnelError.Protocol, "unknown frame type 42");
    }

    [Fact]
    public async Task DataForAStreamNeverOpened_IsAProtocolError()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer();
        await peer.SendAsync(FrameType.Data, 99, new byte[10]);
        await AssertGoneAwayAsync(listener, peer, TunnelError.Protocol, "stream 99, which was never opened");
    }

    [Fact]
    public async Task OpenWithAnIdNotAboveTheLast_IsAProtocolError()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer();
        await peer.OpenAsync(5);
        await peer.OpenAsync(3);
        await AssertGoneAwayAsync(listener, peer, TunnelError.Protocol, "unexpected open of stream 3");
    }

    [Fact]
    public async Task DataBeyondTheStreamCredit_EndsTheConnection_WithAFlowControlGoAway()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer();
        await peer.OpenAsync(1);
        TunnelStream? accepted = await listener.AcceptFlowAsync(default);
        Assert.NotNull(accepted);

        // Nothing is consumed, so the stream's 1 MiB is all the peer may send.
        byte[] chunk = new byte[FrameHeader.MaxPayload];
        for (int sent = 0; sent <= TunnelStream.InitialWindow; sent += chunk.Length)
        {
            await peer.SendAsync(FrameType.Data, 1, chunk);
        }

        await AssertGoneAwayAsync(listener, peer, TunnelError.FlowControl, "beyond its credit");
        await Assert.ThrowsAsync<IOException>(async () => await accepted.Input.ReadAsync());
    }

    [Fact]
    public async Task DataBeyondTheConnectionWindow_AcrossStreams_IsAFlowControlError()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer(new TunnelOptions { ConnectionWindow = 256 * 1024 });
        byte[] chunk = new byte[FrameHeader.MaxPayload];
        for (uint id = 1; id <= 9; id += 2)
        {
            // 64 KiB per stream is far within each stream's credit; five of them overrun the connection's 256 KiB.
            await peer.OpenAsync(id);
            await peer.SendAsync(FrameType.Data, id, chunk);
        }

        await AssertGoneAwayAsync(listener, peer, TunnelError.FlowControl, "beyond the connection window");
    }

    [Fact]
    public async Task CreditGrownPast2Pow31_IsAFlowControlError()
    {
        (TunnelConnection dialler, TunnelConnection listener) = Pair();
        TunnelStream stream = await dialler.OpenFlowAsync(RawTunnelPeer.Header(80), default);
        TunnelStream accepted = (await listener.AcceptFlowAsync(default))!;

        // A listener granting absurd credit is misbehaving: the dialler ends the connection rather than overflow.
        listener.SendControl(FrameType.Window, accepted.Id, int.MaxValue);
        await dialler.Completion.WaitAsync(Patience);
        Assert.Contains("FlowControl", dialler.CloseReason, StringComparison.Ordinal);
        await Assert.ThrowsAsync<IOException>(async () => await stream.WriteAsync(new byte[10], default));
    }

    [Fact]
    public async Task PingFlood_FromAPeerThatNeverReads_EndsTheConnection_WithinTheControlQueueCap()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer();

        // Each ping asks for a pong; the peer reads none of them, so they pile up behind the blocked writer.
        Task flood = Task.Run(async () =>
        {
            byte[] ping = new byte[FrameHeader.Size + 8];
            ping[0] = (byte)FrameType.Ping;
            BinaryPrimitives.WriteInt32BigEndian(ping.AsSpan(8), 8);
            byte[] burst = [.. Enumerable.Repeat(ping, 1000).SelectMany(p => p)];
            for (int i = 0; i < 100 && !listener.Completion.IsCompleted; i++)
            {
                await peer.Stream.WriteAsync(burst);
            }
        });
        await listener.Completion.WaitAsync(Patience);

        // Closed at the cap: at most ControlQueueLimit pongs (20 bytes each) were ever queued. (A heap figure
        // would measure the tests running beside this one.)
        Assert.Contains("EnhanceYourCalm", listener.CloseReason, StringComparison.Ordinal);
        Assert.Contains($"{FrameWriter.ControlQueueLimit} control frames queued", listener.CloseReason, StringComparison.Ordinal);
        await Task.WhenAny(flood, Task.Delay(Patience));
    }

    [Fact]
    public async Task OpenResetPairs_20000_NeverRunMoreHandlersThanTheLimit_AndEachResetCancelsItsPendingWork()
    {
        const int limit = 64;
        const int pairs = 20_000;
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer(new TunnelOptions { MaxAcceptedStreams = limit });
        int running = 0, maxRunning = 0, started = 0, cancelled = 0;
        var handlers = new List<Task>();
        Task serve = Task.Run(async () =>
        {
            while (await listener.AcceptFlowAsync(default) is TunnelStream flow)
            {
                Interlocked.Increment(ref started);
                int now = Interlocked.Increment(ref running);
                InterlockedMax(ref maxRunning, now);
                handlers.Add(Task.Run(async () =>
                {
                    try
                    {
                        // Stands for a connect into the workload that never completes by itself.
                        await Task.Delay(Timeout.Infinite, flow.Aborted);
                    }
                    catch (OperationCanceledException)
                    {
                        Interlocked.Increment(ref cancelled);
                    }
                    finally
                    {
                        Interlocked.Decrement(ref running);
                        flow.HandlerDone();
                    }
                }));
            }
        });
        int resetsBack = 0;
        Task read = Task.Run(async () =>
        {
            while (await peer.ReadAsync() is RawFrame frame)
            {
                if (frame.Type == FrameType.Reset)
                {
                    Interlocked.Increment(ref resetsBack);
                }
            }
        });

        for (uint i = 0; i < pairs; i++)
        {
            uint id = 2 * i + 1;
            await peer.OpenAsync(id);
            await peer.SendU32Async(FrameType.Reset, id, (uint)TunnelError.Cancelled);
        }

        await WaitUntilAsync(
            () => Volatile.Read(ref running) == 0 && listener.LiveAcceptedStreams == 0 && Volatile.Read(ref started) + Volatile.Read(ref resetsBack) == pairs,
            "every handler to end and every refused stream to be answered");
        Assert.True(listener.IsAlive, $"the connection must survive open+reset pairs: {listener.CloseReason}");
        Assert.True(maxRunning <= limit, $"{maxRunning} handlers ran at once; the limit is {limit}");
        Assert.Equal(started, cancelled);
        await listener.DisposeAsync();
        await Task.WhenAll(serve, read).WaitAsync(Patience);
    }

    [Fact]
    public async Task StreamsBeyondTheLimit_AreRefused_WhileTheirHandlersStillRun()
    {
        (TunnelConnection listener, RawTunnelPeer peer) = ListenerWithRawPeer(new TunnelOptions { MaxAcceptedStreams = 4 });
        for (uint id = 1; id <= 11; id += 2)
        {
            await peer.OpenAsync(id);
        }

        // Six opened, four served (their handlers never end here): the fifth and sixth are refused at once.
        RawFrame? first = await peer.ReadAsync().WaitAsync(Patience);
        RawFrame? second = await peer.ReadAsync().WaitAsync(Patience);
        Assert.Equal((FrameType.Reset, 9u, (uint)TunnelError.EnhanceYourCalm), (first!.Type, first.StreamId, first.U32));
        Assert.Equal((FrameType.Reset, 11u, (uint)TunnelError.EnhanceYourCalm), (second!.Type, second.StreamId, second.U32));
        Assert.Equal(4, listener.LiveAcceptedStreams);
        Assert.True(listener.IsAlive);
    }

    [Fact]
    public async Task StreamsPerIdentity_AreCappedAcrossConnections()
    {
        var options = new TunnelOptions { Quota = new IdentityStreamQuota(3) };
        (TunnelConnection one, RawTunnelPeer peer1) = ListenerWithRawPeer(options);
        (TunnelConnection two, RawTunnelPeer peer2) = ListenerWithRawPeer(options);
        await peer1.OpenAsync(1);
        await peer1.OpenAsync(3);
        await WaitUntilAsync(() => options.Quota.Current(Web) == 2, "the first connection's two streams");
        await peer2.OpenAsync(1);
        await peer2.OpenAsync(3);
        RawFrame? refused = await peer2.ReadAsync().WaitAsync(Patience);
        Assert.Equal((FrameType.Reset, 3u, (uint)TunnelError.EnhanceYourCalm), (refused!.Type, refused.StreamId, refused.U32));
        Assert.Equal(3, options.Quota.Current(Web));

        // A handler that ends gives its place back.
        TunnelStream done = (await one.AcceptFlowAsync(default))!;
        done.HandlerDone();
        Assert.Equal(2, options.Quota.Current(Web));
        await peer2.OpenAsync(5);
        Assert.NotNull(await two.AcceptFlowAsync(default).WaitAsync(Patience));
        Assert.NotNull(await two.AcceptFlowAsync(default).WaitAsync(Patience));
    }

    [Fact]
    public async Task GoAway_StopsNewStreams_WhileTheStreamInFlightDrainsByteExact()
    {
        (TunnelConnection dialler, TunnelConnection listener) = Pair();
        TunnelStream upload = await dialler.OpenFlowAsync(RawTunnelPeer.Header(80), default);
        TunnelStream served = (await listener.AcceptFlowAsync(default))!;
        byte[] payload = RandomNumberGenerator.GetBytes(3 * TunnelStream.InitialWindow + 777);

        Task goingAway = listener.GoAwayAsync(Patience, "agent shutting down");
        await WaitUntilAsync(() => !dialler.IsAlive, "the dialler to see the GOAWAY");
        await Assert.ThrowsAsync<IOException>(() => dialler.OpenFlowAsync(RawTunnelPeer.Header(81), default));

        Task<byte[]> received = TunnelStreams.ReadAllAsync(served);
        await TunnelStreams.SendAllAsync(upload, payload);
        Assert.Equal(payload, await received.WaitAsync(Patience));
        await served.CompleteWritesAsync(default);
        await goingAway.WaitAsync(Patience);
        await dialler.Completion.WaitAsync(Patience);
        Assert.DoesNotContain("Protocol", dialler.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GoAway_FromTheDialler_TheListenersLastAnswerArrivesWhole_BeforeTheConnectionCloses()
    {
        (TunnelConnection dialler, TunnelConnection listener) = Pair();
        TunnelStream request = await dialler.OpenFlowAsync(RawTunnelPeer.Header(80), default);
        TunnelStream served = (await listener.AcceptFlowAsync(default))!;
        await request.CompleteWritesAsync(default);

        // The dialling agent shuts down while the answer is still to come.
        Task goingAway = dialler.GoAwayAsync(Patience, "agent shutting down");
        await WaitUntilAsync(() => !listener.IsAlive, "the listener to see the GOAWAY");
        byte[] answer = RandomNumberGenerator.GetBytes(3 * TunnelStream.InitialWindow + 5);
        Task<byte[]> received = TunnelStreams.ReadAllAsync(request);
        await TunnelStreams.SendAllAsync(served, answer);
        Assert.Equal(answer, await received.WaitAsync(Patience));
        await goingAway.WaitAsync(Patience);
        await listener.Completion.WaitAsync(Patience);
        Assert.DoesNotContain("Internal", listener.CloseReason + dialler.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FramesQueuedTogether_GoOutInFewWrites()
    {
        HeldWritesStream? transport = null;
        (TunnelConnection dialler, TunnelConnection listener) = Pair(diallerTransport: a => transport = new HeldWritesStream(a));

        // The socket is busy while 500 flows open (as under load); their OPENs queue behind it, then go out together.
        transport!.Hold();
        for (int i = 0; i < 500; i++)
        {
            await dialler.OpenFlowAsync(RawTunnelPeer.Header(1000 + i), default);
        }

        transport.Release();
        for (int i = 0; i < 500; i++)
        {
            Assert.NotNull(await listener.AcceptFlowAsync(default).WaitAsync(Patience));
        }

        Assert.True(dialler.WriteBatches < 100, $"500 opens took {dialler.WriteBatches} writes");
    }

    [Fact]
    public async Task CancelledWrites_NeverTouchTheSharedStream_OtherFlowsCarryOn()
    {
        (TunnelConnection dialler, TunnelConnection listener) = Pair();
        TunnelStream kept = await dialler.OpenFlowAsync(RawTunnelPeer.Header(1), default);
        TunnelStream keptServed = (await listener.AcceptFlowAsync(default))!;
        byte[] payload = RandomNumberGenerator.GetBytes(8 * 1024 * 1024);
        Task<byte[]> received = TunnelStreams.ReadAllAsync(keptServed);
        Task send = TunnelStreams.SendAllAsync(kept, payload);
        for (int round = 0; round < 50; round++)
        {
            // A flow whose receiver never reads: its writer waits for credit, then is cancelled mid-wait.
            TunnelStream stalled = await dialler.OpenFlowAsync(RawTunnelPeer.Header(2), default);
            TunnelStream stalledServed = (await listener.AcceptFlowAsync(default))!;
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(5));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                while (true)
                {
                    await stalled.WriteAsync(new byte[FrameHeader.MaxPayload], cancel.Token);
                }
            });
            await stalled.ResetAsync(TunnelError.Cancelled);
            stalledServed.HandlerDone();
        }

        await send.WaitAsync(Patience);
        Assert.Equal(payload, await received.WaitAsync(Patience));
        Assert.True(dialler.IsAlive && listener.IsAlive, $"closed: {dialler.CloseReason} / {listener.CloseReason}");
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < Patience, $"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }

    public async Task DisposeAsync()
    {
        foreach (IAsyncDisposable owned in _owned)
        {
            await owned.DisposeAsync();
        }
    }
}
