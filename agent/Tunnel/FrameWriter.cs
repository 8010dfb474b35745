using System.Buffers;
using System.Buffers.Binary;
using Nerdbank.Streams;

namespace NodeMesh.Tunnel;

/// <summary>
/// The one writer of a tunnel connection. Frames are appended whole, under a lock, to a pooled batch buffer;
/// a single loop writes whatever has been queued in one go per wake-up (one TLS write, far fewer records and
/// system calls than a write per frame), double-buffered so senders fill the next batch while one is written.
/// Invariants: nothing but this loop touches the transport for writing, and no caller's cancellation reaches it
/// (a cancelled TLS write corrupts the stream for every flow); a sender's cancellation only ends its own wait
/// for room. Data waits while the queue holds <see cref="DataQueueLimit"/> bytes; control frames never wait but
/// are capped at <see cref="ControlQueueLimit"/> queued at once: past that the peer is not reading what it asks
/// for (pongs, windows, resets) and the connection fails.
/// </summary>
internal sealed class FrameWriter
{
    /// <summary>Queued data bytes beyond which senders wait (one more batch may be in flight meanwhile).</summary>
    public const int DataQueueLimit = 256 * 1024;

    /// <summary>Control frames queued at once (not yet written) beyond which the connection fails.</summary>
    public const int ControlQueueLimit = 8192;

    private readonly Stream _transport;
    private readonly Action<Exception> _failed;
    private readonly Lock _gate = new();
    private TaskCompletionSource? _sleeping;
    private Sequence<byte> _queued = NewBatch();
    private Sequence<byte> _spare = NewBatch();
    private long _queuedData;
    private int _queuedControl;
    private bool _signalled;
    private bool _writing;
    private Exception? _failure;
    private TaskCompletionSource? _roomWaiter;
    private TaskCompletionSource? _idleWaiter;

    /// <param name="failed">Called once, from the writer loop, when the transport fails or the control cap is hit.</param>
    public FrameWriter(Stream transport, Action<Exception> failed)
    {
        _transport = transport;
        _failed = failed;
        Completion = RunAsync();
    }

    /// <summary>Ends when the writer has stopped (after a failure or <see cref="Stop"/>).</summary>
    public Task Completion { get; }

    /// <summary>Batches (transport writes of everything queued) since start, for tests and the admin view.</summary>
    public long BatchesWritten { get; private set; }

    /// <summary>Queues a DATA frame, waiting first while the queue is full. The payload is copied.</summary>
    public async ValueTask WriteDataAsync(uint streamId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task room;
            lock (_gate)
            {
                ThrowIfFailed();
                if (_queuedData < DataQueueLimit)
                {
                    Span<byte> target = _queued.GetSpan(FrameHeader.Size + payload.Length);
                    new FrameHeader(FrameType.Data, streamId, payload.Length).Write(target);
                    payload.Span.CopyTo(target[FrameHeader.Size..]);
                    _queued.Advance(FrameHeader.Size + payload.Length);
                    _queuedData += payload.Length;
                    SignalLocked();
                    return;
                }

                _roomWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                room = _roomWaiter.Task;
            }

            await room.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Queues a frame with a small payload (OPEN, WINDOW, FIN, RESET, PING, PONG, GOAWAY) without waiting.</summary>
    /// <exception cref="IOException">The writer has failed or stopped.</exception>
    public void WriteControl(FrameType type, uint streamId, ReadOnlySpan<byte> payload)
    {
        Exception? overflow = null;
        lock (_gate)
        {
            ThrowIfFailed();
            if (++_queuedControl > ControlQueueLimit)
            {
                overflow = new TunnelProtocolException(TunnelError.EnhanceYourCalm,
                    $"{ControlQueueLimit} control frames queued while the peer does not read (ping or window flood)");
                _failure = overflow;
            }
            else
            {
                Span<byte> target = _queued.GetSpan(FrameHeader.Size + payload.Length);
                new FrameHeader(type, streamId, payload.Length).Write(target);
                payload.CopyTo(target[FrameHeader.Size..]);
                _queued.Advance(FrameHeader.Size + payload.Length);
                SignalLocked();
                return;
            }
        }

        Fail(overflow);
        throw new IOException(overflow.Message, overflow);
    }

    /// <summary>Queues a frame whose payload is one u32 (WINDOW, RESET).</summary>
    public void WriteControl(FrameType type, uint streamId, uint value)
    {
        Span<byte> payload = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, value);
        WriteControl(type, streamId, payload);
    }

    /// <summary>Completes when everything queued so far has been written (or the writer has failed).</summary>
    public Task WhenIdleAsync()
    {
        lock (_gate)
        {
            if (_failure is not null || (!_writing && _queued.Length == 0))
            {
                return Task.CompletedTask;
            }

            _idleWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _idleWaiter.Task;
        }
    }

    /// <summary>Stops the writer: queued frames not yet written are dropped, waiting senders fail.</summary>
    public void Stop(Exception reason) => Fail(reason);

    private void SignalLocked()
    {
        if (!_signalled)
        {
            _signalled = true;
            _sleeping?.TrySetResult();
            _sleeping = null;
        }
    }

    private void ThrowIfFailed()
    {
        if (_failure is not null)
        {
            throw new IOException(_failure.Message, _failure);
        }
    }

    private async Task RunAsync()
    {
        try
        {
            while (true)
            {
                Task wake;
                lock (_gate)
                {
                    if (_failure is not null)
                    {
                        return;
                    }

                    if (_signalled)
                    {
                        wake = Task.CompletedTask;
                    }
                    else
                    {
                        _sleeping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        wake = _sleeping.Task;
                    }
                }

                await wake.ConfigureAwait(false);
                while (true)
                {
                    Sequence<byte>? batch = null;
                    TaskCompletionSource? room = null;
                    TaskCompletionSource? idle = null;
                    lock (_gate)
                    {
                        if (_failure is not null)
                        {
                            return;
                        }

                        if (_queued.Length == 0)
                        {
                            // Nothing left: sleep until the next frame signals again.
                            _signalled = false;
                            _writing = false;
                            idle = _idleWaiter;
                            _idleWaiter = null;
                        }
                        else
                        {
                            batch = _queued;
                            _queued = _spare;
                            _spare = batch;
                            _queuedData = 0;
                            _queuedControl = 0;
                            room = _roomWaiter;
                            _roomWaiter = null;
                            _writing = true;
                        }
                    }

                    if (batch is null)
                    {
                        idle?.TrySetResult();
                        break;
                    }

                    room?.TrySetResult();
                    foreach (ReadOnlyMemory<byte> segment in batch.AsReadOnlySequence)
                    {
                        await _transport.WriteAsync(segment, CancellationToken.None).ConfigureAwait(false);
                    }

                    BatchesWritten++;
                    batch.Reset();
                }
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        {
            Fail(ex);
        }
    }

    private void Fail(Exception reason)
    {
        TaskCompletionSource? room;
        TaskCompletionSource? idle;
        TaskCompletionSource? sleeping;
        bool first;
        lock (_gate)
        {
            first = _failure is null || ReferenceEquals(_failure, reason);
            _failure ??= reason;
            room = _roomWaiter;
            idle = _idleWaiter;
            sleeping = _sleeping;
            _roomWaiter = _idleWaiter = _sleeping = null;
            _signalled = true;
        }

        sleeping?.TrySetResult();
        room?.TrySetException(new IOException(reason.Message, reason));
        idle?.TrySetResult();
        if (first)
        {
            _failed(reason);
        }
    }

    private static Sequence<byte> NewBatch() => new(ArrayPool<byte>.Shared) { MinimumSpanLength = FrameHeader.Size + FrameHeader.MaxPayload };
}
