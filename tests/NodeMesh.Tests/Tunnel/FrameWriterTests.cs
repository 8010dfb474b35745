using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>
/// The writer role: a DATA sender on an idle transport writes inline; a write that does not complete at once is
/// finished by the loop while the sender goes on; a failing write fails the connection once, from the loop.
/// </summary>
public sealed class FrameWriterTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task DataOnAnIdleTransport_IsWrittenBySender_BeforeItsWriteReturns()
    {
        var transport = new RecordingStream();
        var writer = new FrameWriter(transport, _ => { });

        await writer.WriteDataAsync(3, new byte[] { 1, 2, 3 }, default);

        // Written on the sender's own call, not by the loop later.
        Assert.Equal(FrameHeader.Size + 3, transport.Length);
        Assert.Equal(1, writer.InlineWrites);
        Assert.Equal(1, writer.BatchesWritten);
        FrameHeader header = ReadHeader(transport.ToArray());
        Assert.Equal(FrameType.Data, header.Type);
        Assert.Equal(3u, header.StreamId);
        Assert.Equal(3, header.Length);
        await writer.WhenIdleAsync().WaitAsync(Patience);
    }

    [Fact]
    public async Task ControlFrames_AreLeftToTheLoop_AndBatched()
    {
        var transport = new RecordingStream { Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        var writer = new FrameWriter(transport, _ => { });

        // The first frame puts the loop in a write that waits; the rest queue behind it and go in one batch.
        for (uint i = 0; i < 100; i++)
        {
            writer.WriteControl(FrameType.Window, 1, i);
        }

        transport.Gate.SetResult();
        await writer.WhenIdleAsync().WaitAsync(Patience);
        Assert.Equal(0, writer.InlineWrites);
        Assert.InRange(writer.BatchesWritten, 1, 2);
        Assert.Equal(100 * (FrameHeader.Size + 4), transport.Length);
    }

    [Fact]
    public async Task AWindowOnAnIdleTransport_IsWrittenBySender_AndWindowsBehindAWaitingWrite_AreBatched()
    {
        var transport = new RecordingStream();
        var writer = new FrameWriter(transport, _ => { });

        // A receiver's credit goes out on its own call, with no hop to the loop.
        writer.WriteWindow(5, 262144);
        Assert.Equal(FrameHeader.Size + 4, transport.Length);
        Assert.Equal(1, writer.InlineWrites);
        FrameHeader header = ReadHeader(transport.ToArray());
        Assert.Equal(FrameType.Window, header.Type);
        Assert.Equal(5u, header.StreamId);
        await writer.WhenIdleAsync().WaitAsync(Patience);

        // While a write waits, later windows queue and the loop writes them together.
        transport.Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        for (uint i = 1; i <= 50; i++)
        {
            writer.WriteWindow(i, i);
        }

        transport.Gate.SetResult();
        await writer.WhenIdleAsync().WaitAsync(Patience);
        Assert.Equal(51 * (FrameHeader.Size + 4), transport.Length);
        Assert.InRange(writer.BatchesWritten, 3, 4);
    }

    [Fact]
    public async Task AnInlineWriteThatWaits_IsFinishedByTheLoop_WhileTheSenderGoesOn_InOrder()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var transport = new RecordingStream { Gate = gate };
        var writer = new FrameWriter(transport, _ => { });

        // The transport does not take the first write: the sender still returns at once.
        Task first = writer.WriteDataAsync(1, Filled(1000, 0xAA), default).AsTask();
        Assert.True(first.IsCompleted, "the sender waited for the transport");
        await writer.WriteDataAsync(1, Filled(500, 0xBB), default);
        writer.WriteControl(FrameType.Fin, 1, ReadOnlySpan<byte>.Empty);
        Assert.False(writer.WhenIdleAsync().IsCompleted);

        gate.SetResult();
        await writer.WhenIdleAsync().WaitAsync(Patience);

        byte[] written = transport.ToArray();
        Assert.Equal((3 * FrameHeader.Size) + 1500, written.Length);
        Assert.Equal(1000, ReadHeader(written).Length);
        Assert.All(written.AsSpan(FrameHeader.Size, 1000).ToArray(), b => Assert.Equal(0xAA, b));
        int second = FrameHeader.Size + 1000;
        Assert.Equal(500, ReadHeader(written.AsSpan(second)).Length);
        Assert.All(written.AsSpan(second + FrameHeader.Size, 500).ToArray(), b => Assert.Equal(0xBB, b));
        Assert.Equal(FrameType.Fin, ReadHeader(written.AsSpan(second + FrameHeader.Size + 500)).Type);
        Assert.Equal(0, writer.InlineWrites);
    }

    [Fact]
    public async Task AFailingInlineWrite_FailsTheWriterOnce_FromTheLoop_AndLaterWritesThrow()
    {
        var transport = new RecordingStream { Failure = new IOException("link down") };
        int failures = 0;
        Exception? reported = null;
        var writer = new FrameWriter(transport, ex =>
        {
            Interlocked.Increment(ref failures);
            reported = ex;
        });

        // The sender's frame was taken; the failure reaches the connection, not this caller.
        await writer.WriteDataAsync(1, new byte[] { 1 }, default);
        await writer.Completion.WaitAsync(Patience);

        Assert.Equal(1, failures);
        Assert.Equal("link down", reported?.Message);
        await Assert.ThrowsAsync<IOException>(() => writer.WriteDataAsync(1, new byte[] { 2 }, default).AsTask());
        Assert.Throws<IOException>(() => writer.WriteControl(FrameType.Fin, 1, ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public async Task ManySendersOnManyThreads_EveryFrameArrivesWhole()
    {
        var transport = new RecordingStream { Yield = true };
        var writer = new FrameWriter(transport, _ => { });
        const int senders = 8, frames = 200;

        await Task.WhenAll(Enumerable.Range(0, senders).Select(s => Task.Run(async () =>
        {
            for (int i = 0; i < frames; i++)
            {
                await writer.WriteDataAsync((uint)(s + 1), Filled(100 + i, (byte)s), default);
                if (i % 7 == 0)
                {
                    writer.WriteControl(FrameType.Window, (uint)(s + 1), (uint)i);
                }
            }
        })));
        await writer.WhenIdleAsync().WaitAsync(Patience);

        byte[] written = transport.ToArray();
        var seen = new int[senders];
        int at = 0;
        while (at < written.Length)
        {
            FrameHeader header = ReadHeader(written.AsSpan(at));
            int sender = (int)header.StreamId - 1;
            if (header.Type == FrameType.Data)
            {
                Assert.Equal(100 + seen[sender], header.Length);
                Assert.All(written.AsSpan(at + FrameHeader.Size, header.Length).ToArray(), b => Assert.Equal((byte)sender, b));
                seen[sender]++;
            }

            at += FrameHeader.Size + header.Length;
        }

        Assert.All(seen, count => Assert.Equal(frames, count));
    }

    private static byte[] Filled(int length, byte value)
    {
        byte[] bytes = new byte[length];
        Array.Fill(bytes, value);
        return bytes;
    }

    private static FrameHeader ReadHeader(ReadOnlySpan<byte> bytes)
    {
        Assert.True(FrameHeader.TryRead(bytes, out FrameHeader header, out string? error), error);
        return header;
    }

    /// <summary>Keeps what is written; optionally makes the first write wait for a gate, yield, or fail.</summary>
    private sealed class RecordingStream : Stream
    {
        private readonly MemoryStream _written = new();
        private readonly Lock _gate = new();

        public TaskCompletionSource? Gate { get; set; }

        public Exception? Failure { get; set; }

        public bool Yield { get; set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length
        {
            get
            {
                lock (_gate)
                {
                    return _written.Length;
                }
            }
        }

        public override long Position { get => Length; set => throw new NotSupportedException(); }

        public byte[] ToArray()
        {
            lock (_gate)
            {
                return _written.ToArray();
            }
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Failure is not null)
            {
                throw Failure;
            }

            if (Gate is not null)
            {
                await Gate.Task;
            }

            if (Yield)
            {
                await Task.Yield();
            }

            lock (_gate)
            {
                _written.Write(buffer.Span);
            }
        }

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
