using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace NodeMesh.Copy;

/// <summary>
/// One direction of a flow. Each pump waits for data with a zero-byte read before it takes a buffer, so an
/// idle flow holds no buffer; on an orderly end of input it half-closes its output, and on a failure it throws
/// so the caller aborts both sides (a reset, never a clean end for a truncated transfer).
/// </summary>
internal static class Pump
{
    private const int BufferSize = 64 * 1024;

    public static async Task SocketToSocketAsync(Socket from, Socket to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        while (true)
        {
            await from.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
            try
            {
                int read = await from.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                await SendAllAsync(to, buffer.AsMemory(0, read), cancellationToken);
                total.Value += read;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    public static async Task SocketToPipeAsync(Socket from, PipeWriter to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        while (true)
        {
            await from.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);
            Memory<byte> memory = to.GetMemory(BufferSize);
            int read = await from.ReceiveAsync(memory, SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                await to.CompleteAsync();
                return;
            }

            to.Advance(read);
            total.Value += read;
            FlushResult flush = await to.FlushAsync(cancellationToken);
            if (flush.IsCompleted || flush.IsCanceled)
            {
                throw new IOException("the tunnel stream was closed by the peer while sending");
            }
        }
    }

    public static async Task PipeToSocketAsync(PipeReader from, Socket to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result = await from.ReadAsync(cancellationToken);
            ReadOnlySequence<byte> buffer = result.Buffer;
            foreach (ReadOnlyMemory<byte> segment in buffer)
            {
                await SendAllAsync(to, segment, cancellationToken);
            }

            total.Value += buffer.Length;
            from.AdvanceTo(buffer.End);
            if (result.IsCanceled)
            {
                throw new OperationCanceledException("tunnel stream read canceled");
            }

            if (result.IsCompleted)
            {
                await from.CompleteAsync();
                to.Shutdown(SocketShutdown.Send);
                return;
            }
        }
    }

    private static async ValueTask SendAllAsync(Socket socket, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, cancellationToken);
            data = data[sent..];
        }
    }
}
