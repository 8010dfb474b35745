using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;
using NodeMesh.Capture;
using NodeMesh.Identity;
using NodeMesh.Interop;

namespace NodeMesh.Tunnel;

/// <summary>
/// One mutually authenticated TLS 1.3 connection between two agents, carrying many flows as streams of a
/// small framed protocol (<see cref="FrameHeader"/>) with per-stream credit. The dialling side always
/// presents the source workload's certificate, so every flow on a connection belongs to that one identity.
/// The dialler opens streams (odd ids); the listener accepts them. Invariants: frames are written whole under
/// one lock; one read loop owns all reads; if the connection fails, every stream fails (its flows are reset,
/// never ended cleanly), and a peer that breaks the framing or overruns its credit loses the connection.
/// </summary>
internal sealed class TunnelConnection : IAsyncDisposable
{
    /// <summary>Streams the listening side accepts at once on one connection; more are reset.</summary>
    public const int MaxAcceptedStreams = 4096;

    private static readonly TimeSpan KeepaliveInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan DeadAfter = TimeSpan.FromSeconds(15);

    private readonly Socket _socket;
    private readonly SslStream _tls;
    private readonly bool _dialler;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, TunnelStream> _streams = new();
    private readonly Channel<TunnelStream> _accepted = Channel.CreateBounded<TunnelStream>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.Wait });
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _nextStreamId;
    private int _activeFlows;
    private long _idleSinceTicks;
    private long _lastReceivedTicks;
    private int _disposed;

    private TunnelConnection(Socket socket, SslStream tls, bool dialler, SpiffeId localIdentity, SpiffeId peerIdentity)
    {
        _socket = socket;
        _tls = tls;
        _dialler = dialler;
        _nextStreamId = dialler ? 1 : 2;
        LocalIdentity = localIdentity;
        PeerIdentity = peerIdentity;
        _idleSinceTicks = _lastReceivedTicks = Environment.TickCount64;
        _ = ReadLoopAsync();
        _ = KeepaliveLoopAsync();
    }

    public SpiffeId LocalIdentity { get; }

    public SpiffeId PeerIdentity { get; }

    public int ActiveFlows => Volatile.Read(ref _activeFlows);

    public bool IsAlive => !_closed.IsCancellationRequested;

    /// <summary>Completes when the connection has ended, for whatever reason.</summary>
    public Task Completion => _completion.Task;

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
        CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            SocketOptions.SetMark(socket, CaptureRules.AgentMark);
            SocketOptions.SetAbortOnClose(socket);
            using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutSource.CancelAfter(timeout);
            await socket.ConnectAsync(peer, timeoutSource.Token);

            string? rejection = null;
            var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            var options = new SslClientAuthenticationOptions
            {
                TargetHost = peer.Address.ToString(),
                EnabledSslProtocols = Protocols,
                ClientCertificateContext = certificate,
                CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                {
                    // The chain the peer sent carries its intermediates; the verifier still roots it at our bundle.
                    if (!verifier.TryVerify(presented, chain, out SpiffeId? peerId, out string? reason))
                    {
                        rejection = reason;
                        return false;
                    }

                    if (peerId != expectedPeer)
                    {
                        rejection = $"peer presented {peerId}, expected {expectedPeer}";
                        return false;
                    }

                    return true;
                },
            };
            try
            {
                await tls.AuthenticateAsClientAsync(options, timeoutSource.Token);
            }
            catch (AuthenticationException ex) when (rejection is not null)
            {
                throw new AuthenticationException($"tunnel to {peer} refused: {rejection}", ex);
            }

            return new TunnelConnection(socket, tls, dialler: true, identity, expectedPeer);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Wraps a connection accepted and authenticated by the tunnel listener.</summary>
    public static TunnelConnection Accepted(Socket socket, SslStream tls, SpiffeId localIdentity, SpiffeId peerIdentity) =>
        new(socket, tls, dialler: false, localIdentity, peerIdentity);

    /// <summary>Counts a flow against this connection if it has room; the caller releases it when the flow ends.</summary>
    public bool TryReserve(int maxFlows)
    {
        while (true)
        {
            int current = Volatile.Read(ref _activeFlows);
            if (current >= maxFlows || !IsAlive)
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

    /// <summary>Opens a stream carrying <paramref name="header"/>; data may follow at once (no round trip).</summary>
    public async Task<TunnelStream> OpenFlowAsync(FlowHeader header, CancellationToken cancellationToken)
    {
        if (!_dialler)
        {
            throw new InvalidOperationException("only the dialling side opens flows");
        }

        uint id = (uint)Interlocked.Add(ref _nextStreamId, 2) - 2;
        var stream = new TunnelStream(this, id, null);
        _streams[id] = stream;
        byte[] frame = new byte[FrameHeader.Size + header.Length];
        header.Write(frame.AsSpan(FrameHeader.Size));
        try
        {
            await WriteFrameAsync(new FrameHeader(FrameType.Open, id, header.Length), frame, 0, cancellationToken);
        }
        catch
        {
            _streams.TryRemove(id, out _);
            throw;
        }

        return stream;
    }

    /// <summary>Waits for the next flow the peer opens; null when the connection has ended.</summary>
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

    /// <summary>Writes one frame whose header goes at <paramref name="buffer"/>[<paramref name="offset"/>..+12], payload after it.</summary>
    internal async ValueTask WriteFrameAsync(FrameHeader header, byte[] buffer, int offset, CancellationToken cancellationToken)
    {
        header.Write(buffer.AsSpan(offset, FrameHeader.Size));
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_closed.IsCancellationRequested, this);
            await _tls.WriteAsync(buffer.AsMemory(offset, FrameHeader.Size + header.Length), cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or SocketException)
        {
            Close(ex);
            throw;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    internal async ValueTask SendControlAsync(FrameType type, uint streamId, uint value, CancellationToken cancellationToken)
    {
        int length = type switch { FrameType.Fin => 0, FrameType.Ping or FrameType.Pong => 8, _ => 4 };
        byte[] frame = ArrayPool<byte>.Shared.Rent(FrameHeader.Size + 8);
        try
        {
            if (length == 4)
            {
                BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(FrameHeader.Size), value);
            }
            else if (length == 8)
            {
                BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(FrameHeader.Size), value);
            }

            await WriteFrameAsync(new FrameHeader(type, streamId, length), frame, 0, cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(frame);
        }
    }

    internal void ForgetIfClosed(TunnelStream stream)
    {
        if (stream.Closed)
        {
            _streams.TryRemove(stream.Id, out _);
        }
    }

    internal void Forget(TunnelStream stream) => _streams.TryRemove(stream.Id, out _);

    private async Task ReadLoopAsync()
    {
        byte[] header = new byte[FrameHeader.Size];
        byte[] control = new byte[FlowHeader.MaxLength];
        Exception? failure = null;
        try
        {
            while (true)
            {
                await _tls.ReadExactlyAsync(header, _closed.Token);
                Volatile.Write(ref _lastReceivedTicks, Environment.TickCount64);
                if (!FrameHeader.TryRead(header, out FrameHeader frame, out string? error))
                {
                    throw new InvalidDataException($"tunnel protocol error from {PeerIdentity}: {error}");
                }

                _streams.TryGetValue(frame.StreamId, out TunnelStream? stream);
                switch (frame.Type)
                {
                    case FrameType.Data:
                        await ReceiveDataAsync(frame, stream);
                        break;
                    case FrameType.Open:
                        await _tls.ReadExactlyAsync(control.AsMemory(0, frame.Length), _closed.Token);
                        Accept(frame, control.AsSpan(0, frame.Length).ToArray());
                        break;
                    case FrameType.Window:
                        await _tls.ReadExactlyAsync(control.AsMemory(0, 4), _closed.Token);
                        stream?.AddCredit(BinaryPrimitives.ReadUInt32BigEndian(control));
                        break;
                    case FrameType.Fin:
                        if (stream is not null)
                        {
                            stream.RemoteFinished();
                            ForgetIfClosed(stream);
                        }

                        break;
                    case FrameType.Reset:
                        await _tls.ReadExactlyAsync(control.AsMemory(0, 4), _closed.Token);
                        if (stream is not null)
                        {
                            stream.Fail(new IOException($"stream {frame.StreamId} reset by the peer agent (reason {BinaryPrimitives.ReadUInt32BigEndian(control)})"));
                            Forget(stream);
                        }

                        break;
                    case FrameType.Ping:
                        await _tls.ReadExactlyAsync(control.AsMemory(0, 8), _closed.Token);
                        _ = SendControlAsync(FrameType.Pong, 0, 0, _closed.Token).AsTask().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
                        break;
                    case FrameType.Pong:
                        await _tls.ReadExactlyAsync(control.AsMemory(0, 8), _closed.Token);
                        break;
                }
            }
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        finally
        {
            Close(failure ?? new IOException("tunnel connection ended"));
        }
    }

    private async ValueTask ReceiveDataAsync(FrameHeader frame, TunnelStream? stream)
    {
        Memory<byte> target = default;
        bool reserved;
        try
        {
            if (stream is not null && stream.TryBeginDirect(frame.Length, out Socket? sink))
            {
                await ReceiveDirectAsync(frame, stream, sink);
                return;
            }

            reserved = stream is not null && stream.TryReserveReceive(frame.Length, out target);
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"tunnel protocol error from {PeerIdentity}: {ex.Message}", ex);
        }

        if (!reserved)
        {
            // Data racing a local reset or close: read and drop it.
            byte[] discard = ArrayPool<byte>.Shared.Rent(frame.Length);
            try
            {
                await _tls.ReadExactlyAsync(discard.AsMemory(0, frame.Length), _closed.Token);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(discard);
            }

            return;
        }

        try
        {
            await _tls.ReadExactlyAsync(target, _closed.Token);
        }
        finally
        {
            await stream!.CommitReceiveAsync(frame.Length);
        }
    }

    /// <summary>Reads a frame's payload and hands it to the flow's socket without waking the flow's pump.</summary>
    private async ValueTask ReceiveDirectAsync(FrameHeader frame, TunnelStream stream, Socket sink)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(frame.Length);
        try
        {
            await _tls.ReadExactlyAsync(buffer.AsMemory(0, frame.Length), _closed.Token);
            int sent;
            try
            {
                sent = SocketOptions.SendNow(sink, buffer.AsSpan(0, frame.Length));
            }
            catch (Exception ex) when (ex is InteropException or ObjectDisposedException)
            {
                // The workload's socket is gone: this flow fails, the connection's other flows go on.
                stream.Fail(new IOException($"delivering stream {stream.Id}: {ex.Message}", ex));
                return;
            }

            uint credit = stream.EndDirect(buffer.AsSpan(0, frame.Length), sent);
            if (credit > 0)
            {
                // Never await a write on the read loop (see Accept).
                _ = SendControlAsync(FrameType.Window, stream.Id, credit, _closed.Token).AsTask().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Accept(FrameHeader frame, byte[] headerBytes)
    {
        if (_dialler || frame.StreamId % 2 != 1 || _streams.ContainsKey(frame.StreamId))
        {
            throw new InvalidDataException($"tunnel protocol error from {PeerIdentity}: unexpected open of stream {frame.StreamId}");
        }

        FlowHeader? header = FlowHeader.TryParse(headerBytes, out FlowHeader parsed, out string? error) ? parsed : null;
        var stream = new TunnelStream(this, frame.StreamId, header, error);
        _streams[frame.StreamId] = stream;
        if (_streams.Count > MaxAcceptedStreams || !_accepted.Writer.TryWrite(stream))
        {
            // Never await a write on the read loop: if both peers' loops waited on full send buffers, neither
            // would read again.
            _ = stream.ResetAsync(reason: 1).AsTask();
        }
    }

    private async Task KeepaliveLoopAsync()
    {
        using var timer = new PeriodicTimer(KeepaliveInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_closed.Token))
            {
                long silent = Environment.TickCount64 - Volatile.Read(ref _lastReceivedTicks);
                if (silent >= DeadAfter.TotalMilliseconds)
                {
                    Close(new TimeoutException($"tunnel peer {PeerIdentity} silent for {silent} ms"));
                    return;
                }

                if (silent >= KeepaliveInterval.TotalMilliseconds - 100)
                {
                    await SendControlAsync(FrameType.Ping, 0, 0, _closed.Token);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or SocketException)
        {
            // Closed: nothing left to keep alive.
        }
    }

    private void Close(Exception reason)
    {
        if (_closed.IsCancellationRequested)
        {
            return;
        }

        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return;
        }

        _accepted.Writer.TryComplete();
        foreach (TunnelStream stream in _streams.Values)
        {
            stream.Fail(new IOException($"tunnel connection to {PeerIdentity} lost: {reason.Message}", reason));
        }

        _streams.Clear();
        _tls.Dispose();
        _socket.Dispose();
        _completion.TrySetResult();
    }

    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Close(new ObjectDisposedException(nameof(TunnelConnection)));
        }

        return ValueTask.CompletedTask;
    }
}
