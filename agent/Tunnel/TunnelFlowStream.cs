using System.Buffers;
using System.IO.Pipelines;

namespace NodeMesh.Tunnel;

/// <summary>
/// A dialled tunnel flow, once the peer answered Connected, as a <see cref="Stream"/> for code that speaks to a
/// stream (the gateway's HTTP client): reads return credit to the peer as they are consumed, a write is sent
/// within the flow's credit, and disposal ends the flow (FIN when nothing is left unread, else a reset, as close(2) does) and releases
/// the connection's reservation.
/// </summary>
internal sealed class TunnelFlowStream(TunnelStream flow, TunnelLease lease) : Stream
{
    private int _disposed;
    private int _reading;
    private bool _ended;

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_ended || buffer.IsEmpty)
        {
            return 0;
        }

        ReadResult result;
        Volatile.Write(ref _reading, 1);
        try
        {
            result = await flow.Input.ReadAsync(cancellationToken);
        }
        finally
        {
            Volatile.Write(ref _reading, 0);
        }

        if (result.IsCanceled)
        {
            // Disposed while this read waited (the HTTP client gave up on the request: a timeout, a cancellation).
            throw new IOException("the tunnel flow was closed while a read was pending");
        }

        ReadOnlySequence<byte> available = result.Buffer;
        if (available.IsEmpty && result.IsCompleted)
        {
            flow.Input.AdvanceTo(available.End);
            _ended = true;
            return 0;
        }

        int count = (int)Math.Min(available.Length, buffer.Length);
        available.Slice(0, count).CopyTo(buffer.Span);
        flow.Input.AdvanceTo(available.GetPosition(count));
        await flow.ConsumedAsync(count, cancellationToken);
        return count;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => flow.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        flow.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    // The HTTP client only calls the asynchronous members; a blocking call on a tunnel flow would hold a thread for the network.
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("a tunnel flow is read asynchronously");

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("a tunnel flow is written asynchronously");

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            // As close(2) on a TCP socket: a FIN when nothing the peer sent is left unread (the client read its
            // whole response, then dropped the connection: "Connection: close", an idle pooled connection), a
            // reset when something is (a request cancelled halfway through its response).
            // A read still waiting means the client gave up halfway: wake it (it fails), and reset.
            bool abandoned = Volatile.Read(ref _reading) == 1;
            if (abandoned)
            {
                flow.Input.CancelPendingRead();
            }

            if (!abandoned && (_ended || !HasUnreadInput()))
            {
                await flow.CompleteWritesAsync(CancellationToken.None);
            }
            else
            {
                await flow.ResetAsync(TunnelError.Cancelled);
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // The tunnel is gone already: the flow ended with it.
        }
        finally
        {
            await flow.Input.CompleteAsync();
            lease.Dispose();
        }

        await base.DisposeAsync();
    }

    private bool HasUnreadInput()
    {
        if (!flow.Input.TryRead(out ReadResult result))
        {
            return false;
        }

        bool unread = !result.Buffer.IsEmpty;
        flow.Input.AdvanceTo(result.Buffer.Start);
        return unread;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Disposal is asynchronous work (a frame to send); Stream.Dispose callers get it done in the background.
            _ = DisposeAsync().AsTask();
        }

        base.Dispose(disposing);
    }
}
