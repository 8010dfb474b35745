using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using NodeMesh.Tunnel;

namespace NodeMesh.Copy;

/// <summary>
/// One direction of a flow. Each pump waits for data with a zero-byte read before it takes a buffer, so an
/// idle flow holds no buffer (unless the last read filled the buffer: then more is almost surely waiting, and
/// the extra system call is skipped); on an orderly end of input it half-closes its output, and on a failure it throws
/// so the caller aborts both sides (a reset, never a clean end for a truncated transfer).
/// </summary>
internal static class Pump
{
    private const int BufferSize = 64 * 1024;

    public static async Task SocketToSocketAsync(Socket from, Socket to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        bool moreLikely = false;
        while (true)
        {
            if (!moreLikely)
            {
                await from.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);
            }

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
                moreLikely = read == buffer.Length;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    public static async Task SocketToTunnelAsync(Socket from, TunnelStream to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        bool moreLikely = false;
        while (true)
        {
            if (!moreLikely)
            {
                await from.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);
            }

            byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
            try
            {
                // At most a frame's header less than the buffer: header and payload then fill one 64 KiB segment
                // of the writer's batch exactly. (Writing frames straight from this buffer, header in front, saved
                // no measurable CPU and would make the pump wait for the transport: the copy stays.)
                int read = await from.ReceiveAsync(buffer.AsMemory(0, BufferSize - FrameHeader.Size), SocketFlags.None, cancellationToken);
                if (read == 0)
                {
                    await to.CompleteWritesAsync(cancellationToken);
                    return;
                }

                await to.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                total.Value += read;
                moreLikely = read == BufferSize - FrameHeader.Size;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>Bytes the stream's receive path writes straight to <paramref name="to"/> are counted by the stream (<see cref="TunnelStream.DirectBytes"/>), not in <paramref name="total"/>.</summary>
    public static async Task TunnelToSocketAsync(TunnelStream from, Socket to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        PipeReader input = from.Input;
        from.AttachSink(to);
        await DrainTunnelAsync(from, input, to, total, cancellationToken);
    }

    private static async Task DrainTunnelAsync(TunnelStream from, PipeReader input, Socket to, StrongBox<long> total, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadResult result = await input.ReadAsync(cancellationToken);
            ReadOnlySequence<byte> buffer = result.Buffer;
            foreach (ReadOnlyMemory<byte> segment in buffer)
            {
                await SendAllAsync(to, segment, cancellationToken);
            }

            int consumed = (int)buffer.Length;
            total.Value += consumed;
            input.AdvanceTo(buffer.End);
            if (consumed > 0)
            {
                await from.ConsumedAsync(consumed, cancellationToken);
            }

            if (result.IsCompleted)
            {
                await input.CompleteAsync();
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
