using System.IO.Pipelines;
using System.Net.Sockets;

namespace NodeMesh.Tunnel;

/// <summary>
/// One flow on a tunnel connection. Received bytes land in <see cref="Input"/> (filled by the connection's
/// read loop, never beyond the credit this side granted); sending waits for the peer's credit, so one slow
/// flow never stalls the others. Invariants: one writer (the flow's pump) and one reader; the stream leaves
/// the connection's table once both directions have ended or it was reset; an accepted stream counts against
/// the connection's limits until its handler calls <see cref="HandlerDone"/>.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The abort source has no timer or wait handle; nothing to release.")]
internal sealed class TunnelStream
{
    /// <summary>Credit each side grants a new stream: enough to keep a fast link busy, bounded per flow.</summary>
    public const int InitialWindow = 1024 * 1024;

    private readonly TunnelConnection _connection;
    private readonly Pipe _received;
    private readonly Lock _gate = new();
    private readonly SendCredit _sendCredit = new(InitialWindow);
    private long _receiveAllowance = InitialWindow;
    private int _unacknowledged;
    private Exception? _failure;
    private int _finSent;
    private int _resetSent;
    private int _remoteEnded;
    private bool _receiving;
    private Socket? _sink;
    private long _pipeBacklog;
    private long _directBytes;
    private int _handlerDone;

    // Received bytes charged to the connection's window and not yet delivered onward (or given back on failure).
    private long _windowHeld;
    private readonly bool _accepted;
    private CancellationTokenSource? _aborted;

    public TunnelStream(TunnelConnection connection, uint id, FlowHeader? header, string? headerError = null, bool accepted = false)
    {
        _connection = connection;
        _accepted = accepted;
        Id = id;
        Header = header;
        HeaderError = headerError;
        _received = new Pipe(new PipeOptions(
            pauseWriterThreshold: InitialWindow * 2L,
            resumeWriterThreshold: InitialWindow,
            minimumSegmentSize: 16 * 1024,
            useSynchronizationContext: false));
    }

    public uint Id { get; }

    /// <summary>The flow header the dialling side opened the stream with (accepted streams only).</summary>
    public FlowHeader? Header { get; }

    /// <summary>Why the flow header of an accepted stream could not be read, if it could not.</summary>
    public string? HeaderError { get; }

    public TunnelConnection Connection => _connection;

    public PipeReader Input => _received.Reader;

    /// <summary>Bytes the read loop handed straight to the sink socket, bypassing <see cref="Input"/>.</summary>
    public long DirectBytes => Interlocked.Read(ref _directBytes);

    /// <summary>
    /// Names the socket this stream's bytes go to. From then on, while nothing waits in <see cref="Input"/>,
    /// the connection's read loop sends received bytes to it directly (non-blocking) instead of waking the
    /// flow's pump: one thread hop less per message. Whatever the socket does not take at once goes
    /// through <see cref="Input"/> as usual, so the order of bytes is kept.
    /// </summary>
    public void AttachSink(Socket socket)
    {
        lock (_gate)
        {
            _sink = socket;
        }
    }

    internal bool Closed => Volatile.Read(ref _finSent) != 0 && Volatile.Read(ref _remoteEnded) != 0;

    /// <summary>
    /// Cancelled when the stream fails (the peer reset it, or the connection was lost): work done on the
    /// stream's behalf, such as connecting into the destination workload, stops with it.
    /// </summary>
    public CancellationToken Aborted
    {
        get
        {
            lock (_gate)
            {
                if (_aborted is null)
                {
                    _aborted = new CancellationTokenSource();
                    if (_failure is not null)
                    {
                        _aborted.Cancel();
                    }
                }

                return _aborted.Token;
            }
        }
    }

    /// <summary>The handler of an accepted stream has ended: it stops counting against the peer's stream limits.</summary>
    public void HandlerDone()
    {
        if (_accepted && Interlocked.Exchange(ref _handlerDone, 1) == 0)
        {
            _connection.HandlerEnded();
        }
    }

    /// <summary>Sends <paramref name="data"/> within the stream's and the connection's credit. The bytes are copied into the connection's queue.</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int chunk = await _sendCredit.TakeAsync(Math.Min(data.Length, FrameHeader.MaxPayload), cancellationToken);
            int granted;
            try
            {
                granted = await _connection.TakeSendWindowAsync(chunk, cancellationToken);
            }
            catch
            {
                _sendCredit.Return(chunk);
                throw;
            }

            if (granted < chunk)
            {
                _sendCredit.Return(chunk - granted);
            }

            try
            {
                await _connection.WriteDataAsync(Id, data[..granted], cancellationToken);
            }
            catch
            {
                // Nothing of it was queued: the credit taken for it is still this side's to use.
                _connection.ReturnSendWindow(granted);
                _sendCredit.Return(granted);
                throw;
            }

            data = data[granted..];
        }
    }

    /// <summary>Half-closes: the peer's reader sees the end of the stream after the bytes already sent.</summary>
    public ValueTask CompleteWritesAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (Interlocked.Exchange(ref _finSent, 1) == 0)
        {
            _connection.SendControl(FrameType.Fin, Id);
            _connection.ForgetIfClosed(this);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Aborts both directions and tells the peer (best effort if the connection is already gone).</summary>
    public ValueTask ResetAsync(TunnelError reason)
    {
        Fail(new IOException($"stream {Id} reset locally ({reason})"));
        Volatile.Write(ref _finSent, 1);

        // Tell the peer once, even if the stream had already failed here (a workload socket that broke under
        // the read loop): otherwise the other end would wait for a flow that is gone.
        if (Interlocked.Exchange(ref _resetSent, 1) == 0)
        {
            // If the connection is gone, that resets every stream anyway.
            TunnelConnection.TrySend(() => _connection.SendControl(FrameType.Reset, Id, (uint)reason));
        }

        _connection.Forget(this);
        return ValueTask.CompletedTask;
    }

    /// <summary>Returns credit for bytes the flow has delivered onward, in batches to keep control frames rare.</summary>
    public ValueTask ConsumedAsync(int count, CancellationToken cancellationToken)
    {
        int pending;
        int released;
        lock (_gate)
        {
            released = (int)Math.Min(count, _windowHeld);
            _windowHeld -= released;
            _pipeBacklog -= count;
            _unacknowledged += count;
            if (_unacknowledged < InitialWindow / 4)
            {
                pending = 0;
            }
            else
            {
                pending = _unacknowledged;
                _unacknowledged = 0;
                _receiveAllowance += pending;
            }
        }

        if (released > 0)
        {
            _connection.ReturnReceiveWindow(released);
        }

        if (pending > 0 && Volatile.Read(ref _remoteEnded) == 0)
        {
            _connection.SendWindow(Id, (uint)pending);
        }

        return ValueTask.CompletedTask;
    }

    // ---- called by the connection's read loop ----

    /// <summary>
    /// Where the read loop puts the next <paramref name="length"/> received bytes. Returns false with an empty
    /// target if the stream has already ended here (the bytes are read and dropped), and throws if the peer
    /// sent beyond the credit it was granted.
    /// </summary>
    internal bool TryReserveReceive(int length, out Memory<byte> target)
    {
        lock (_gate)
        {
            if (_failure is not null || Volatile.Read(ref _remoteEnded) != 0)
            {
                target = Memory<byte>.Empty;
                return false;
            }

            if (length > _receiveAllowance)
            {
                throw new TunnelProtocolException(TunnelError.FlowControl, $"stream {Id} sent {length} bytes beyond its credit");
            }

            _receiveAllowance -= length;
            _windowHeld += length;
            _receiving = true;
            target = _received.Writer.GetMemory(length)[..length];
            return true;
        }
    }

    internal ValueTask<FlushResult> CommitReceiveAsync(int length)
    {
        lock (_gate)
        {
            _receiving = false;
            if (_failure is not null)
            {
                // Failed while the bytes were being read: the completion was left to this point.
                _received.Writer.Complete(_failure);
                return default;
            }

            _received.Writer.Advance(length);
            _pipeBacklog += length;
            return _received.Writer.FlushAsync();
        }
    }

    /// <summary>The reserved bytes never arrived whole (the connection failed mid-frame): nothing of them is delivered.</summary>
    internal void AbandonReceive()
    {
        lock (_gate)
        {
            _receiving = false;
            if (_failure is not null)
            {
                _received.Writer.Complete(_failure);
            }
        }
    }

    /// <summary>Whether the next <paramref name="length"/> bytes may go straight to the sink (see <see cref="AttachSink"/>).</summary>
    internal bool TryBeginDirect(int length, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Socket? sink)
    {
        lock (_gate)
        {
            sink = _sink;
            if (sink is null || _failure is not null || Volatile.Read(ref _remoteEnded) != 0 || _pipeBacklog > 0 || _receiving)
            {
                sink = null;
                return false;
            }

            if (length > _receiveAllowance)
            {
                throw new TunnelProtocolException(TunnelError.FlowControl, $"stream {Id} sent {length} bytes beyond its credit");
            }

            _receiveAllowance -= length;
            _windowHeld += length;
            return true;
        }
    }

    /// <summary>
    /// After a direct send of <paramref name="sent"/> bytes of <paramref name="payload"/>: credits them, and
    /// queues the rest in <see cref="Input"/> for the pump. Called only by the read loop; never waits.
    /// </summary>
    internal void EndDirect(ReadOnlySpan<byte> payload, int sent)
    {
        uint credit = 0;
        lock (_gate)
        {
            Interlocked.Add(ref _directBytes, sent);
            _windowHeld -= sent;
            _unacknowledged += sent;
            if (_unacknowledged >= InitialWindow / 4)
            {
                credit = (uint)_unacknowledged;
                _receiveAllowance += _unacknowledged;
                _unacknowledged = 0;
            }

            int rest = payload.Length - sent;
            if (rest > 0 && _failure is null)
            {
                payload[sent..].CopyTo(_received.Writer.GetSpan(rest));
                _received.Writer.Advance(rest);
                _pipeBacklog += rest;
                _ = _received.Writer.FlushAsync().AsTask();
            }
        }

        if (sent > 0)
        {
            _connection.ReturnReceiveWindow(sent);
        }

        if (credit > 0 && Volatile.Read(ref _remoteEnded) == 0)
        {
            _connection.SendWindow(Id, credit);
        }
    }

    internal void AddCredit(uint increment) => _sendCredit.Grant(increment, $"stream {Id} credit");

    internal void RemoteFinished()
    {
        lock (_gate)
        {
            if (_failure is not null || Volatile.Read(ref _remoteEnded) != 0)
            {
                return;
            }

            Volatile.Write(ref _remoteEnded, 1);
            _received.Writer.Complete();
        }
    }

    /// <summary>Fails both directions (peer reset or connection lost). Returns false if already failed.</summary>
    internal bool Fail(Exception reason)
    {
        long held;
        lock (_gate)
        {
            if (_failure is not null)
            {
                return false;
            }

            _failure = reason;
            held = _windowHeld;
            _windowHeld = 0;

            // The pipe's writer belongs to the read loop while it fills a reservation; it completes it then.
            if (!_receiving)
            {
                _received.Writer.Complete(reason);
            }

            Volatile.Write(ref _remoteEnded, 1);
            if (_aborted is not null)
            {
                // Not inline: Fail runs on the connection's read loop, which must not run others' callbacks.
                _ = _aborted.CancelAsync();
            }
        }

        // What this stream still held of the connection's window will never be delivered: the peer may use it again.
        if (held > 0)
        {
            _connection.ReturnReceiveWindow((int)held);
        }

        _sendCredit.Fail(reason);
        return true;
    }
}
