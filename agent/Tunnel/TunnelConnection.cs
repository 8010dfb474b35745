using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using NodeMesh.Capture;
using NodeMesh.Identity;
using NodeMesh.Interop;

namespace NodeMesh.Tunnel;

/// <summary>
/// One mutually authenticated TLS 1.3 connection between two agents (ALPN <c>nodemesh/1</c>), carrying many
/// flows as streams of the framed protocol specified in <c>agent/Tunnel/PROTOCOL.md</c>. The dialling side
/// always presents the source workload's certificate, so every flow on a connection belongs to that one
/// identity. The dialler opens streams (odd ids, increasing); the listener accepts them.
/// Invariants: one read loop owns all reads; one <see cref="FrameWriter"/> owns all writes, and the read loop
/// never waits on it (if both peers' read loops waited on full send buffers, neither would read again); a peer
/// can make this side hold at most <see cref="TunnelOptions.ConnectionWindow"/> received bytes, a bounded number
/// of queued control frames and <see cref="TunnelOptions.MaxAcceptedStreams"/> stream handlers; the
/// connection ends once, with one reason: every stream still open fails (its flow is reset, never ended
/// cleanly), and the peer is told why with a GOAWAY where the writer can still reach it.
/// </summary>
internal sealed partial class TunnelConnection : IAsyncDisposable
{
    /// <summary>The ALPN id both sides require: a peer that does not name it does not speak this protocol.</summary>
    public static readonly SslApplicationProtocol ApplicationProtocol = new("nodemesh/1");

    private static readonly TimeSpan GoAwayFlushTimeout = TimeSpan.FromSeconds(1);

    private readonly Stream _transport;
    private readonly Socket? _socket;
    private readonly bool _dialler;
    private readonly TunnelOptions _options;
    private readonly ILogger _logger;
    private readonly FrameWriter _writer;
    private readonly ConcurrentDictionary<uint, TunnelStream> _streams = new();
    private readonly Channel<TunnelStream> _accepted = Channel.CreateUnbounded<TunnelStream>(new UnboundedChannelOptions { SingleWriter = true });
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _readLoopEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _creditGate = new();
    private readonly Lock _openGate = new();
    private long _nextStreamId;
    private uint _highestPeerStream;
    private int _activeFlows;
    private int _liveAccepted;
    private long _idleSinceTicks;
    private long _lastReceivedTicks;
    private int _closing;
    private int _draining;
    private int _peerWentAway;
    private int _wentAway;
    private readonly SendCredit _sendWindow;
    private long _receiveAllowance;
    private long _receiveUnacknowledged;

    internal TunnelConnection(Stream transport, Socket? socket, bool dialler, SpiffeId localIdentity, SpiffeId peerIdentity, TunnelOptions options)
    {
        _transport = transport;
        _socket = socket;
        _dialler = dialler;
        _options = options;
        _logger = options.Logger;
        _nextStreamId = dialler ? 1 : 2;
        _sendWindow = new SendCredit(options.ConnectionWindow);
        _receiveAllowance = options.ConnectionWindow;
        LocalIdentity = localIdentity;
        PeerIdentity = peerIdentity;
        _idleSinceTicks = _lastReceivedTicks = Environment.TickCount64;
        if (socket is not null)
        {
            // Unacknowledged data past the keepalive timeout fails the socket even while the writer is blocked.
            SocketOptions.SetUserTimeout(socket, options.KeepaliveTimeout);
        }

        _writer = new FrameWriter(transport, ex => Abort(ex, sendGoAway: false));
        _ = ReadLoopAsync();
        _ = KeepaliveLoopAsync();
    }

    public SpiffeId LocalIdentity { get; }

    public SpiffeId PeerIdentity { get; }

    public int ActiveFlows => Volatile.Read(ref _activeFlows);

    /// <summary>Accepted streams whose handler has not yet ended (listening side).</summary>
    public int LiveAcceptedStreams => Volatile.Read(ref _liveAccepted);

    /// <summary>Whether new flows may use this connection: not closed, and neither side has sent GOAWAY.</summary>
    public bool IsAlive => !_closed.IsCancellationRequested && Volatile.Read(ref _draining) == 0;

    /// <summary>Completes when the connection has ended, for whatever reason.</summary>
    public Task Completion => _completion.Task;

    /// <summary>Why the connection ended (null while it is open).</summary>
    public string? CloseReason { get; private set; }

    /// <summary>Writer batches so far: each is one transport write of every frame queued at that moment.</summary>
    public long WriteBatches => _writer.BatchesWritten;

    /// <summary>Milliseconds since the last flow ended, or 0 while flows are active.</summary>
    public long IdleMilliseconds => ActiveFlows > 0 ? 0 : Environment.TickCount64 - Volatile.Read(ref _idleSinceTicks);

    public static SslProtocols Protocols => SslProtocols.Tls13;

    /// <summary>Dials a peer agent as <paramref name="identity"/> and checks the peer is an agent of this mesh.</summary>
    public static async Task<TunnelConnection> ConnectAsync(
        IPEndPoint peer,
        SpiffeId identity,
        SslStreamCertificateContext certificate,
        PeerCertificateVerifier verifier,
        SpiffeId expectedPeer,
        TimeSpan timeout,
        CancellationToken cancellationToken,
        TunnelOptions? options = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        bool connected = false;
        bool alpn = false;
        PeerRejection rejectedAs = PeerRejection.None;
        try
        {
            SocketOptions.SetMark(socket, CaptureRules.AgentMark);
            SocketOptions.SetAbortOnClose(socket);
            if (options?.LocalAddress is IPAddress local)
            {
                socket.Bind(new IPEndPoint(local, 0));
            }

            using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutSource.CancelAfter(timeout);
            await socket.ConnectAsync(peer, timeoutSource.Token);
            connected = true;

            string? rejection = null;
            var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            var authentication = new SslClientAuthenticationOptions
            {
                TargetHost = peer.Address.ToString(),
                EnabledSslProtocols = Protocols,
                ApplicationProtocols = [ApplicationProtocol],
                CipherSuitesPolicy = TunnelCipherSuites.Policy,
                ClientCertificateContext = certificate,
                CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                CertificateChainPolicy = verifier.CreateChainPolicy(),
                RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                {
                    // The chain the peer sent carries its intermediates; the verifier still roots it at our bundle.
                    if (!verifier.TryVerify(presented, chain, out SpiffeId? peerId, out string? reason, out rejectedAs))
                    {
                        rejection = reason;
                        return false;
                    }

                    if (peerId != expectedPeer)
                    {
                        rejection = $"peer presented {peerId}, expected {expectedPeer}";
                        rejectedAs = PeerRejection.Identity;
                        return false;
                    }

                    return true;
                },
            };
            try
            {
                await tls.AuthenticateAsClientAsync(authentication, timeoutSource.Token);
            }
            catch (AuthenticationException ex) when (rejection is not null)
            {
                throw new AuthenticationException($"tunnel to {peer} refused: {rejection}", ex);
            }

            if (tls.NegotiatedApplicationProtocol != ApplicationProtocol)
            {
                alpn = true;
                throw new AuthenticationException($"tunnel to {peer} refused: the peer does not speak {ApplicationProtocol} (ALPN)");
            }

            return new TunnelConnection(tls, socket, dialler: true, identity, expectedPeer, options ?? TunnelOptions.Default);
        }
        catch (Exception ex)
        {
            socket.Dispose();
            if (connected && !cancellationToken.IsCancellationRequested)
            {
                options?.Metrics?.TunnelHandshakeFailed("outbound", HandshakeFailure.Classify(ex, rejectedAs, alpn));
            }

            throw;
        }
    }

    /// <summary>Wraps a connection accepted and authenticated by the tunnel listener.</summary>
    public static TunnelConnection Accepted(Socket socket, SslStream tls, SpiffeId localIdentity, SpiffeId peerIdentity, TunnelOptions? options = null) =>
        new(tls, socket, dialler: false, localIdentity, peerIdentity, options ?? TunnelOptions.Default);

    /// <summary>Counts a flow against this connection if it has room; the caller releases it when the flow ends.</summary>
    public bool TryReserve(int maxFlows)
    {
        while (true)
        {
            int current = Volatile.Read(ref _activeFlows);

            // A negative count means the pool's reaper has claimed the connection (see TryClaimIdle).
            if (current < 0 || current >= maxFlows || !IsAlive)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _activeFlows, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _activeFlows) == 0)
        {
            Volatile.Write(ref _idleSinceTicks, Environment.TickCount64);
        }
    }

    /// <summary>
    /// Claims an idle connection for closing: succeeds only while no flow holds it, and from then on no flow can
    /// reserve it. The reaper and a reservation can never both win.
    /// </summary>
    public bool TryClaimIdle() => Interlocked.CompareExchange(ref _activeFlows, int.MinValue, 0) == 0;

    /// <summary>Opens a stream carrying <paramref name="header"/>; data may follow at once (no round trip).</summary>
    /// <exception cref="IOException">The connection has ended or is going away.</exception>
    public Task<TunnelStream> OpenFlowAsync(FlowHeader header, CancellationToken cancellationToken)
    {
        if (!_dialler)
        {
            throw new InvalidOperationException("only the dialling side opens flows");
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (!IsAlive)
        {
            throw new IOException($"tunnel to {PeerIdentity} is {(CloseReason is null ? "going away" : "closed: " + CloseReason)}");
        }

        Span<byte> payload = stackalloc byte[FlowHeader.MaxLength];
        header.Write(payload);
        TunnelStream stream;
        lock (_openGate)
        {
            // Ids are taken and OPENs queued in the same order, so the peer sees them increasing.
            uint id = (uint)_nextStreamId;
            _nextStreamId += 2;
            if (Volatile.Read(ref _closing) != 0)
            {
                throw new IOException($"tunnel to {PeerIdentity} is closed: {CloseReason}");
            }

            stream = new TunnelStream(this, id, null);
            _streams[id] = stream;
            try
            {
                _writer.WriteControl(FrameType.Open, id, payload[..header.Length]);
            }
            catch
            {
                _streams.TryRemove(id, out _);
                throw;
            }
        }

        return Task.FromResult(stream);
    }

    /// <summary>Waits for the next flow the peer opens; null when the connection has ended or is draining.</summary>
    public async Task<TunnelStream?> AcceptFlowAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is ChannelClosedException or OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>
    /// Tells the peer this side takes no new streams (GOAWAY), lets the streams in flight drain for up to
    /// <paramref name="drain"/>, then closes. The peer's pool moves new flows to another connection meanwhile.
    /// </summary>
    public async Task GoAwayAsync(TimeSpan drain, string reason)
    {
        Volatile.Write(ref _wentAway, 1);
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            SendGoAway(TunnelError.None, reason);
        }

        using var deadline = new CancellationTokenSource(drain);
        try
        {
            while (!_streams.IsEmpty && !_closed.IsCancellationRequested)
            {
                await Task.Delay(50, deadline.Token);
            }

            await _writer.WhenIdleAsync().WaitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            // Drain time is up: what is still open is reset below.
        }

        Abort(new TunnelProtocolException(TunnelError.None, reason), sendGoAway: false);
    }

    // ---- used by the connection's streams ----

    internal ValueTask WriteDataAsync(uint streamId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        _writer.WriteDataAsync(streamId, payload, cancellationToken);

    internal void SendControl(FrameType type, uint streamId, uint value) => _writer.WriteControl(type, streamId, value);

    /// <summary>Returns credit to the peer (written at once when the transport is idle); a failed connection needs none.</summary>
    internal void SendWindow(uint streamId, uint increment)
    {
        try
        {
            _writer.WriteWindow(streamId, increment);
        }
        catch (IOException)
        {
            // The writer has failed: the connection is ending, and with it every stream.
        }
    }

    internal void SendControl(FrameType type, uint streamId) => _writer.WriteControl(type, streamId, ReadOnlySpan<byte>.Empty);

    /// <summary>Takes up to <paramref name="wanted"/> bytes of the connection's send window, waiting while it is empty.</summary>
    internal ValueTask<int> TakeSendWindowAsync(int wanted, CancellationToken cancellationToken) => _sendWindow.TakeAsync(wanted, cancellationToken);

    /// <summary>Gives back send window a cancelled writer took and never queued.</summary>
    internal void ReturnSendWindow(int count) => _sendWindow.Return(count);

    /// <summary>Bytes of received data have left this side (delivered onward or dropped): the peer may send as many again.</summary>
    internal void ReturnReceiveWindow(int count)
    {
        long pending;
        lock (_creditGate)
        {
            _receiveUnacknowledged += count;
            if (_receiveUnacknowledged < _options.ConnectionWindow / 4)
            {
                return;
            }

            pending = _receiveUnacknowledged;
            _receiveUnacknowledged = 0;
            _receiveAllowance += pending;
        }

        SendWindow(0, (uint)pending);
    }

    /// <summary>Queues a frame if the connection is still up; a connection that has failed resets every stream anyway.</summary>
    internal static void TrySend(Action send)
    {
        try
        {
            send();
        }
        catch (IOException)
        {
            // The writer has failed: the connection is ending, and with it every stream.
        }
    }

    internal void ForgetIfClosed(TunnelStream stream)
    {
        if (stream.Closed)
        {
            Forget(stream);
        }
    }

    internal void Forget(TunnelStream stream)
    {
        if (_streams.TryRemove(stream.Id, out _) && _streams.IsEmpty && Volatile.Read(ref _peerWentAway) != 0)
        {
            Abort(new TunnelProtocolException(TunnelError.None, "the peer went away and the last stream has ended"), sendGoAway: false);
        }
    }

    /// <summary>An accepted stream's handler has ended: it no longer counts against the stream limits.</summary>
    internal void HandlerEnded()
    {
        Interlocked.Decrement(ref _liveAccepted);
        _options.Quota.Release(PeerIdentity);
    }

    private async Task ReadLoopAsync()
    {
        byte[] header = new byte[FrameHeader.Size];
        byte[] control = new byte[Math.Max(FlowHeader.MaxLength, 8 + FrameHeader.MaxGoAwayReason)];
        Exception? failure = null;
        try
        {
            while (true)
            {
                await _transport.ReadExactlyAsync(header, _closed.Token);
                Volatile.Write(ref _lastReceivedTicks, Environment.TickCount64);
                if (!FrameHeader.TryRead(header, out FrameHeader frame, out string? error))
                {
                    throw new TunnelProtocolException(TunnelError.Protocol, error!);
                }

                if (frame.Type == FrameType.Data)
                {
                    await ReceiveDataAsync(frame);
                    continue;
                }

                Memory<byte> payload = control.AsMemory(0, frame.Length);
                if (frame.Length > 0)
                {
                    await _transport.ReadExactlyAsync(payload, _closed.Token);
                }

                HandleControl(frame, payload.Span);
            }
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        finally
        {
            Abort(failure ?? new IOException("tunnel connection ended"), sendGoAway: failure is TunnelProtocolException);
            _readLoopEnded.TrySetResult();
        }
    }

    private void HandleControl(FrameHeader frame, ReadOnlySpan<byte> payload)
    {
        TunnelStream? stream = null;
        if (frame.StreamId != 0 && frame.Type != FrameType.Open)
        {
            stream = Known(frame.StreamId);
        }

        switch (frame.Type)
        {
            case FrameType.Open:
                Accept(frame, payload);
                break;
            case FrameType.Window:
                uint increment = BinaryPrimitives.ReadUInt32BigEndian(payload);
                if (increment == 0)
                {
                    throw new TunnelProtocolException(TunnelError.Protocol, $"window increment of 0 on stream {frame.StreamId}");
                }

                if (frame.StreamId == 0)
                {
                    _sendWindow.Grant(increment, "connection window");
                }
                else
                {
                    stream?.AddCredit(increment);
                }

                break;
            case FrameType.Fin:
                if (stream is not null)
                {
                    stream.RemoteFinished();
                    ForgetIfClosed(stream);
                }

                break;
            case FrameType.Reset:
                if (stream is not null)
                {
                    uint code = BinaryPrimitives.ReadUInt32BigEndian(payload);
                    stream.Fail(new IOException($"stream {frame.StreamId} reset by the peer agent (reason {code})"));
                    Forget(stream);
                }

                break;
            case FrameType.Ping:
                _writer.WriteControl(FrameType.Pong, 0, payload);
                break;
            case FrameType.Pong:
                break;
            case FrameType.GoAway:
                ReceiveGoAway(payload);
                break;
        }
    }

    /// <summary>
    /// The stream a frame names, or null if it has already ended here (frames racing a local reset are
    /// dropped). A stream that was never opened is a protocol error.
    /// </summary>
    private TunnelStream? Known(uint id)
    {
        if (_streams.TryGetValue(id, out TunnelStream? stream))
        {
            return stream;
        }

        bool opened = id % 2 == 1 && (_dialler ? id < (uint)Interlocked.Read(ref _nextStreamId) : id <= _highestPeerStream);
        return opened ? null : throw new TunnelProtocolException(TunnelError.Protocol, $"frame for stream {id}, which was never opened");
    }

    private async ValueTask ReceiveDataAsync(FrameHeader frame)
    {
        TunnelStream? stream = Known(frame.StreamId);
        lock (_creditGate)
        {
            if (frame.Length > _receiveAllowance)
            {
                throw new TunnelProtocolException(TunnelError.FlowControl,
                    $"{frame.Length} bytes on stream {frame.StreamId} beyond the connection window ({_receiveAllowance} left)");
            }

            _receiveAllowance -= frame.Length;
        }

        Memory<byte> target = default;
        bool reserved = false;
        if (stream is not null && stream.TryBeginDirect(frame.Length, out Socket? sink))
        {
            await ReceiveDirectAsync(frame, stream, sink);
            return;
        }

        if (stream is not null)
        {
            reserved = stream.TryReserveReceive(frame.Length, out target);
        }

        if (!reserved)
        {
            // Data racing a local reset or close: read and drop it, and give its window back at once.
            byte[] discard = ArrayPool<byte>.Shared.Rent(frame.Length);
            try
            {
                await _transport.ReadExactlyAsync(discard.AsMemory(0, frame.Length), _closed.Token);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(discard);
            }

            ReturnReceiveWindow(frame.Length);
            return;
        }

        bool whole = false;
        try
        {
            await _transport.ReadExactlyAsync(target, _closed.Token);
            whole = true;
        }
        finally
        {
            // A frame the transport cut short is never delivered: its missing bytes would be whatever the buffer held.
            if (whole)
            {
                await stream!.CommitReceiveAsync(frame.Length);
            }
            else
            {
                stream!.AbandonReceive();
            }
        }
    }

    /// <summary>Reads a frame's payload and hands it to the flow's socket without waking the flow's pump.</summary>
    private async ValueTask ReceiveDirectAsync(FrameHeader frame, TunnelStream stream, Socket sink)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(frame.Length);
        try
        {
            await _transport.ReadExactlyAsync(buffer.AsMemory(0, frame.Length), _closed.Token);
            int sent;
            try
            {
                sent = SocketOptions.SendNow(sink, buffer.AsSpan(0, frame.Length));
            }
            catch (Exception ex) when (ex is InteropException or ObjectDisposedException)
            {
                // The workload's socket is gone: this flow fails, the connection's other flows go on.
                // (Failing gives back the connection window the frame took.)
                stream.Fail(new IOException($"delivering stream {stream.Id}: {ex.Message}", ex));
                return;
            }

            stream.EndDirect(buffer.AsSpan(0, frame.Length), sent);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Accept(FrameHeader frame, ReadOnlySpan<byte> headerBytes)
    {
        if (_dialler || frame.StreamId % 2 != 1 || frame.StreamId <= _highestPeerStream)
        {
            throw new TunnelProtocolException(TunnelError.Protocol,
                $"unexpected open of stream {frame.StreamId} (the dialler opens odd, increasing ids; last was {_highestPeerStream})");
        }

        _highestPeerStream = frame.StreamId;
        if (Volatile.Read(ref _draining) != 0)
        {
            // Opened before the peer saw our GOAWAY: refused untouched, so the peer may retry it elsewhere.
            SendControl(FrameType.Reset, frame.StreamId, (uint)TunnelError.Refused);
            return;
        }

        // A stream counts until its handler ends, not until the peer resets it: OPEN+RESET pairs cannot pile up
        // handlers (each of which connects into a workload) beyond the limit.
        if (Interlocked.Increment(ref _liveAccepted) > _options.MaxAcceptedStreams)
        {
            Interlocked.Decrement(ref _liveAccepted);
            _options.Metrics?.TunnelStreamRefused("connection_limit");
            SendControl(FrameType.Reset, frame.StreamId, (uint)TunnelError.EnhanceYourCalm);
            return;
        }

        if (!_options.Quota.TryAcquire(PeerIdentity))
        {
            Interlocked.Decrement(ref _liveAccepted);
            _options.Metrics?.TunnelStreamRefused("identity_limit");
            SendControl(FrameType.Reset, frame.StreamId, (uint)TunnelError.EnhanceYourCalm);
            return;
        }

        FlowHeader? header = FlowHeader.TryParse(headerBytes, out FlowHeader parsed, out string? error) ? parsed : null;
        var stream = new TunnelStream(this, frame.StreamId, header, error, accepted: true);
        lock (_openGate)
        {
            // Once the connection is ending, a stream added now would never be failed by Abort.
            _streams[frame.StreamId] = stream;
            if (Volatile.Read(ref _closing) != 0 || !_accepted.Writer.TryWrite(stream))
            {
                _streams.TryRemove(frame.StreamId, out _);
                stream.HandlerDone();
            }
        }
    }

    private void ReceiveGoAway(ReadOnlySpan<byte> payload)
    {
        uint lastStream = BinaryPrimitives.ReadUInt32BigEndian(payload);
        var code = (TunnelError)BinaryPrimitives.ReadUInt32BigEndian(payload[4..]);

        // The peer's words go into this agent's log: no control characters, bounded.
        string reason = NodeMesh.Contracts.Printable.Of(Encoding.UTF8.GetString(payload[8..]));
        Interlocked.Exchange(ref _draining, 1);
        Interlocked.Exchange(ref _peerWentAway, 1);
        if (code == TunnelError.None)
        {
            Log.PeerGoingAway(_logger, PeerIdentity.Uri, LocalIdentity.Uri, reason);
        }
        else
        {
            Log.PeerAborted(_logger, PeerIdentity.Uri, LocalIdentity.Uri, code.ToString(), reason);
        }

        // Streams above the peer's last are not processed there: fail them now, so their flows are refused
        // (or retried) rather than waiting for an answer that will not come.
        foreach (TunnelStream stream in _streams.Values)
        {
            if (_dialler && stream.Id > lastStream)
            {
                stream.Fail(new IOException($"stream {stream.Id} refused: the peer agent is going away ({reason})"));
                Forget(stream);
            }
        }

        _accepted.Writer.TryComplete();
        if (_streams.IsEmpty)
        {
            Abort(new TunnelProtocolException(TunnelError.None, $"peer went away: {reason}"), sendGoAway: false);
        }
    }

    private void SendGoAway(TunnelError code, string reason)
    {
        byte[] utf8 = Encoding.UTF8.GetBytes(reason);
        int length = Math.Min(utf8.Length, FrameHeader.MaxGoAwayReason);
        Span<byte> payload = stackalloc byte[8 + FrameHeader.MaxGoAwayReason];
        BinaryPrimitives.WriteUInt32BigEndian(payload, _highestPeerStream);
        BinaryPrimitives.WriteUInt32BigEndian(payload[4..], (uint)code);
        utf8.AsSpan(0, length).CopyTo(payload[8..]);
        byte[] frame = payload[..(8 + length)].ToArray();
        TrySend(() => _writer.WriteControl(FrameType.GoAway, 0, frame));
    }

    private async Task KeepaliveLoopAsync()
    {
        TimeSpan tick = TimeSpan.FromMilliseconds(Math.Max(100, Math.Min(_options.KeepaliveInterval.TotalMilliseconds, _options.KeepaliveTimeout.TotalMilliseconds / 3)));
        using var timer = new PeriodicTimer(tick);
        byte[] ping = new byte[8];
        try
        {
            while (await timer.WaitForNextTickAsync(_closed.Token))
            {
                long silent = Environment.TickCount64 - Volatile.Read(ref _lastReceivedTicks);
                if (silent >= _options.KeepaliveTimeout.TotalMilliseconds)
                {
                    Abort(new TunnelProtocolException(TunnelError.KeepaliveTimeout, $"peer silent for {silent} ms"), sendGoAway: true);
                    return;
                }

                if (silent >= _options.KeepaliveInterval.TotalMilliseconds - tick.TotalMilliseconds / 2)
                {
                    BinaryPrimitives.WriteInt64BigEndian(ping, Environment.TickCount64);
                    _writer.WriteControl(FrameType.Ping, 0, ping);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // Closed: nothing left to keep alive.
        }
    }

    /// <summary>Ends the connection once, for <paramref name="reason"/>: logged, counted, and (if asked) told to the peer.</summary>
    private void Abort(Exception reason, bool sendGoAway)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        TunnelError code = reason switch
        {
            TunnelProtocolException protocol => protocol.Code,
            OperationCanceledException or ObjectDisposedException => TunnelError.None,

            // After a GOAWAY either way, the peer's closing the connection is the orderly end that was announced.
            EndOfStreamException when Volatile.Read(ref _peerWentAway) != 0 || Volatile.Read(ref _wentAway) != 0 => TunnelError.None,

            // TCP_USER_TIMEOUT is the keepalive timeout: sent data went unacknowledged that long.
            IOException { InnerException: SocketException { SocketErrorCode: SocketError.TimedOut } } => TunnelError.KeepaliveTimeout,
            _ => TunnelError.Internal,
        };
        CloseReason = code == TunnelError.None ? reason.Message : $"{code}: {reason.Message}";
        Volatile.Write(ref _draining, 1);
        if (code == TunnelError.None)
        {
            Log.Closed(_logger, LocalIdentity.Uri, PeerIdentity.Uri, reason.Message);
        }
        else
        {
            Log.Aborted(_logger, LocalIdentity.Uri, PeerIdentity.Uri, code.ToString(), reason.Message);
        }

        _options.Metrics?.TunnelClosed(code.ToString());
        lock (_openGate)
        {
            // Under the gate that opens and accepts streams: none can be added after this.
            _accepted.Writer.TryComplete();
            foreach (TunnelStream stream in _streams.Values)
            {
                stream.Fail(new IOException($"tunnel connection to {PeerIdentity} lost: {reason.Message}", reason));
            }

            _streams.Clear();
        }

        while (_accepted.Reader.TryRead(out TunnelStream? unserved))
        {
            // Never handed to a handler: release its place in the limits here.
            unserved.HandlerDone();
        }

        _sendWindow.Fail(new IOException($"tunnel connection to {PeerIdentity} lost: {CloseReason}", reason));

        if (sendGoAway && code != TunnelError.None)
        {
            SendGoAway(code, reason.Message);
        }

        // An end this side decided on (drained, idle, the peer gone away, a protocol error) first sends what is
        // queued: the last stream's final DATA and FIN, the GOAWAY. A failed transport or a dispose has nothing to send.
        if (sendGoAway || reason is TunnelProtocolException)
        {
            _ = TearDownAfterFlushAsync(reason);
        }
        else
        {
            TearDown(reason);
        }
    }

    private async Task TearDownAfterFlushAsync(Exception reason)
    {
        await _writer.WhenIdleAsync().WaitAsync(GoAwayFlushTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        TearDown(reason);
    }

    private void TearDown(Exception reason)
    {
        _closed.Cancel();
        _writer.Stop(reason);
        _transport.Dispose();
        _socket?.Dispose();
        _ = CompleteAfterReadLoopAsync();
    }

    /// <summary>
    /// Completion means nothing of the connection runs any more. A teardown from elsewhere (a dispose, the writer
    /// failing) can come while the read loop is mid-frame, say counting an OPEN it has not yet refused or queued.
    /// </summary>
    private async Task CompleteAfterReadLoopAsync()
    {
        await _readLoopEnded.Task;
        _completion.TrySetResult();
    }

    public ValueTask DisposeAsync()
    {
        Abort(new ObjectDisposedException(nameof(TunnelConnection), "closed by this agent"), sendGoAway: false);
        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 320, Level = LogLevel.Warning, Message = "tunnel {LocalIdentity} <-> {PeerIdentity} aborted ({Code}): {Reason}")]
        public static partial void Aborted(ILogger logger, string localIdentity, string peerIdentity, string code, string reason);

        [LoggerMessage(EventId = 321, Level = LogLevel.Debug, Message = "tunnel {LocalIdentity} <-> {PeerIdentity} closed: {Reason}")]
        public static partial void Closed(ILogger logger, string localIdentity, string peerIdentity, string reason);

        [LoggerMessage(EventId = 322, Level = LogLevel.Information, Message = "tunnel peer {PeerIdentity} (us: {LocalIdentity}) is going away: {Reason}")]
        public static partial void PeerGoingAway(ILogger logger, string peerIdentity, string localIdentity, string reason);

        [LoggerMessage(EventId = 323, Level = LogLevel.Warning, Message = "tunnel peer {PeerIdentity} (us: {LocalIdentity}) aborted the connection ({Code}): {Reason}")]
        public static partial void PeerAborted(ILogger logger, string peerIdentity, string localIdentity, string code, string reason);
    }
}
