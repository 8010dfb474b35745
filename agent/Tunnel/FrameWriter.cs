using System.Buffers;
using System.Buffers.Binary;
using Nerdbank.Streams;

namespace NodeMesh.Tunnel;

/// <summary>
/// The one writer of a tunnel connection. Frames are appended whole, under a lock, to a pooled batch buffer;
/// whoever holds the writer role writes everything queued in one go (one TLS write, far fewer records and
/// system calls than a write per frame), double-buffered so senders fill the next batch while one is written.
/// A DATA sender that finds the transport idle takes the role itself and writes inline: no thread hop in the
/// common case. If that write does not complete at once (the socket's buffer is full) or fails, the pending
/// write is handed to the writer loop and the sender goes on; the loop also writes whatever was queued
/// meanwhile, and control frames, which are batched by the loop only.
/// Invariants: one holder of the role at a time and only the holder touches the transport for writing; no
/// caller's cancellation reaches it (a cancelled TLS write corrupts the stream for every flow) and no caller
/// waits for the transport; a sender's cancellation only ends its own wait for room. Data waits while the
/// queue holds <see cref="DataQueueLimit"/> bytes; control frames never wait but are capped at
/// <see cref="ControlQueueLimit"/> queued at once: past that the peer is not reading what it asks for (pongs,
/// windows, resets) and the connection fails.
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

    // Someone (an inline sender or the loop) holds the writer role: only it writes to the transport.
    private bool _holding;

    // The role has been handed to the loop (or the writer failed): the loop runs instead of sleeping.
    private bool _loopRuns;

    // An inline write that did not complete at once, for the loop to finish.
    private Task? _handoff;
    private Exception? _failure;
    private TaskCompletionSource? _roomWaiter;
    private TaskCompletionSource? _idleWaiter;
    private long _batchesWritten;
    private long _inlineWrites;

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
    public long BatchesWritten => Interlocked.Read(ref _batchesWritten);

    /// <summary>Of <see cref="BatchesWritten"/>, those a sender wrote itself, without waking the loop.</summary>
    public long InlineWrites => Interlocked.Read(ref _inlineWrites);

    /// <summary>Queues a DATA frame, waiting first while the queue is full, and writes it at once if the transport is idle. The payload is copied.</summary>
    public async ValueTask WriteDataAsync(uint streamId, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task? room = null;
            Sequence<byte>? batch = null;
            TaskCompletionSource? released = null;
            lock (_gate)
            {
                ThrowIfFailed();
                if (_queuedData >= DataQueueLimit)
                {
                    _roomWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    room = _roomWaiter.Task;
                }
                else
                {
                    AppendLocked(FrameType.Data, streamId, payload.Span);
                    _queuedData += payload.Length;
                    if (!_holding)
                    {
                        _holding = true;
                        batch = TakeBatchLocked(out released);
                    }
                }
            }

            if (room is not null)
            {
                await room.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            released?.TrySetResult();
            if (batch is not null)
            {
                WriteInline(batch);
            }

            return;
        }
    }

    /// <summary>Queues a frame with a small payload (OPEN, WINDOW, FIN, RESET, PING, PONG, GOAWAY) without waiting; the loop writes it.</summary>
    /// <exception cref="IOException">The writer has failed or stopped.</exception>
    public void WriteControl(FrameType type, uint streamId, ReadOnlySpan<byte> payload) => WriteControl(type, streamId, payload, inline: false);

    private void WriteControl(FrameType type, uint streamId, ReadOnlySpan<byte> payload, bool inline)
    {
        Exception? overflow = null;
        Sequence<byte>? batch = null;
        TaskCompletionSource? released = null;
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
                AppendLocked(type, streamId, payload);
                if (!_holding)
                {
                    _holding = true;
                    if (inline)
                    {
                        batch = TakeBatchLocked(out released);
                    }
                    else
                    {
                        WakeLoopLocked();
                    }
                }
            }
        }

        if (overflow is null)
        {
            released?.TrySetResult();
            if (batch is not null)
            {
                WriteInline(batch);
            }

            return;
        }

        Fail(overflow);
        throw new IOException(overflow.Message, overflow);
    }

    /// <summary>Queues a frame whose payload is one u32 (WINDOW, RESET).</summary>
    public void WriteControl(FrameType type, uint streamId, uint value) => WriteControl(type, streamId, value, inline: false);

    /// <summary>
    /// Queues a WINDOW frame and, like DATA, writes it at once if the transport is idle: a bulk flow's receiver
    /// returns credit every quarter window, and waking the loop for each would cost a thread hop every time.
    /// </summary>
    public void WriteWindow(uint streamId, uint increment) => WriteControl(FrameType.Window, streamId, increment, inline: true);

    private void WriteControl(FrameType type, uint streamId, uint value, bool inline)
    {
        Span<byte> payload = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, value);
        WriteControl(type, streamId, payload, inline);
    }

    /// <summary>Completes when everything queued so far has been written (or the writer has failed).</summary>
    public Task WhenIdleAsync()
    {
        lock (_gate)
        {
            if (_failure is not null || (!_holding && _queued.Length == 0))
            {
                return Task.CompletedTask;
            }

            _idleWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _idleWaiter.Task;
        }
    }

    /// <summary>Stops the writer: queued frames not yet written are dropped, waiting senders fail.</summary>
    public void Stop(Exception reason) => Fail(reason);

    private void AppendLocked(FrameType type, uint streamId, ReadOnlySpan<byte> payload)
    {
        Span<byte> target = _queued.GetSpan(FrameHeader.Size + payload.Length);
        new FrameHeader(type, streamId, payload.Length).Write(target);
        payload.CopyTo(target[FrameHeader.Size..]);
        _queued.Advance(FrameHeader.Size + payload.Length);
    }

    /// <summary>The holder takes what is queued; senders fill the other buffer meanwhile (it was reset after its last write).</summary>
    private Sequence<byte> TakeBatchLocked(out TaskCompletionSource? room)
    {
        Sequence<byte> batch = _queued;
        _queued = _spare;
        _spare = batch;
        _queuedData = 0;
        _queuedControl = 0;
        room = _roomWaiter;
        _roomWaiter = null;
        return batch;
    }

    private void WakeLoopLocked()
    {
        _loopRuns = true;
        _sleeping?.TrySetResult();
        _sleeping = null;
    }

    /// <summary>A sender holding the role writes its batch; what does not complete at once goes to the loop.</summary>
    private void WriteInline(Sequence<byte> batch)
    {
        ValueTask write;
        try
        {
            write = WriteBatchAsync(batch);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or NotSupportedException or InvalidOperationException)
        {
            write = ValueTask.FromException(ex);
        }

        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            if (!write.IsCompletedSuccessfully)
            {
                // The loop finishes the write (or reports its failure); the sender does not wait for the transport.
                _handoff = write.AsTask();
                if (_failure is not null)
                {
                    // The loop has stopped: nobody else will look at the outcome.
                    _handoff.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                        TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                    _handoff = null;
                }

                WakeLoopLocked();
                return;
            }

            // Already completed (checked above): this only consumes the result, so a pooled source behind it goes back to its pool; nothing blocks.
            write.GetAwaiter().GetResult();
            _batchesWritten++;
            _inlineWrites++;
            batch.Reset();
            if (_failure is not null)
            {
                return;
            }

            if (_queued.Length > 0)
            {
                // Frames queued while this one was written: the loop takes them, this sender goes on.
                WakeLoopLocked();
            }
            else
            {
                _holding = false;
                idle = _idleWaiter;
                _idleWaiter = null;
            }
        }

        idle?.TrySetResult();
    }

    private ValueTask WriteBatchAsync(Sequence<byte> batch)
    {
        ReadOnlySequence<byte> bytes = batch.AsReadOnlySequence;
        return bytes.IsSingleSegment ? _transport.WriteAsync(bytes.First, CancellationToken.None) : WriteSegmentsAsync(bytes);
    }

    private async ValueTask WriteSegmentsAsync(ReadOnlySequence<byte> bytes)
    {
        foreach (ReadOnlyMemory<byte> segment in bytes)
        {
            await _transport.WriteAsync(segment, CancellationToken.None).ConfigureAwait(false);
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

                    if (_loopRuns)
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

                // The loop holds the role from here until it finds the queue empty.
                Task? handoff;
                lock (_gate)
                {
                    if (_failure is not null)
                    {
                        return;
                    }

                    handoff = _handoff;
                    _handoff = null;
                }

                if (handoff is not null)
                {
                    await handoff.ConfigureAwait(false);
                    Interlocked.Increment(ref _batchesWritten);
                    _spare.Reset();
                }

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
                            // Nothing left: give up the role and sleep until it is handed back.
                            _holding = false;
                            _loopRuns = false;
                            idle = _idleWaiter;
                            _idleWaiter = null;
                        }
                        else
                        {
                            batch = TakeBatchLocked(out room);
                        }
                    }

                    if (batch is null)
                    {
                        idle?.TrySetResult();
                        break;
                    }

                    room?.TrySetResult();
                    await WriteBatchAsync(batch).ConfigureAwait(false);
                    Interlocked.Increment(ref _batchesWritten);
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
        bool first;
        lock (_gate)
        {
            first = _failure is null || ReferenceEquals(_failure, reason);
            _failure ??= reason;
            room = _roomWaiter;
            idle = _idleWaiter;
            _roomWaiter = _idleWaiter = null;
            WakeLoopLocked();
        }

        room?.TrySetException(new IOException(reason.Message, reason));
        idle?.TrySetResult();
        if (first)
        {
            _failed(reason);
        }
    }

    // 64 KiB segments: a pump's frame (64 KiB with its header) fills one pooled array exactly instead of half of a 128 KiB one.
    private static Sequence<byte> NewBatch() => new(ArrayPool<byte>.Shared) { MinimumSpanLength = 64 * 1024 };
}
