using System.Buffers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>How one side of a TCP stream ended.</summary>
internal enum StreamEnd
{
    /// <summary>An orderly end of stream (FIN): the peer says everything was sent.</summary>
    CleanEof,

    /// <summary>The connection was reset (RST).</summary>
    Reset,

    /// <summary>Any other socket error.</summary>
    Error,

    /// <summary>Nothing happened before the deadline.</summary>
    TimedOut,
}

/// <summary>What one side of a stream read (or sent), and how it ended.</summary>
/// <param name="Bytes">Bytes read (or, for a sender, sent) before the end.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of those bytes.</param>
/// <param name="Head">The first bytes, kept for small answers (up to the caller's limit).</param>
internal sealed record StreamResult(long Bytes, string Sha256, StreamEnd End, string? Error, byte[] Head)
{
    public string HeadText => Encoding.UTF8.GetString(Head);

    public override string ToString() => $"{End} after {Bytes} bytes{(Error is null ? "" : $" ({Error})")}";
}

/// <summary>Reading and writing whole streams on test sockets, with errors turned into results.</summary>
internal static class SocketStreams
{
    private const int ChunkSize = 256 * 1024;

    public static string Sha256Hex(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>Sends every byte; socket errors become the result's end.</summary>
    /// <param name="times">How many times to send <paramref name="data"/> back to back.</param>
    /// <param name="onProgress">Called after each send with the running total (e.g. to kill something mid-transfer).</param>
    public static async Task<StreamResult> SendAllAsync(
        this Socket socket, ReadOnlyMemory<byte> data, TimeSpan timeout, int times = 1, bool shutdownAfter = true, Func<long, Task>? onProgress = null)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var deadline = new CancellationTokenSource(timeout);
        long sent = 0;
        try
        {
            for (int i = 0; i < times; i++)
            {
                for (int offset = 0; offset < data.Length;)
                {
                    ReadOnlyMemory<byte> chunk = data.Slice(offset, Math.Min(ChunkSize, data.Length - offset));
                    int n = await socket.SendAsync(chunk, SocketFlags.None, deadline.Token);
                    hash.AppendData(chunk.Span[..n]);
                    offset += n;
                    sent += n;
                    if (onProgress is not null)
                    {
                        await onProgress(sent);
                    }
                }
            }

            if (shutdownAfter)
            {
                socket.Shutdown(SocketShutdown.Send);
            }

            return new StreamResult(sent, Convert.ToHexStringLower(hash.GetHashAndReset()), StreamEnd.CleanEof, null, []);
        }
        catch (Exception ex) when (Classify(ex, deadline) is { } end)
        {
            return new StreamResult(sent, Convert.ToHexStringLower(hash.GetHashAndReset()), end, ex.Message, []);
        }
    }

    /// <summary>Reads until the peer ends the stream, the connection fails, or the deadline passes.</summary>
    /// <param name="keep">How many of the first bytes to keep in <see cref="StreamResult.Head"/>.</param>
    /// <param name="onProgress">Called after each read with the running total (e.g. to kill something mid-transfer).</param>
    public static async Task<StreamResult> ReadToEndAsync(this Socket socket, TimeSpan timeout, int keep = 64 * 1024, Func<long, Task>? onProgress = null)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var deadline = new CancellationTokenSource(timeout);
        using var head = new MemoryStream();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        long total = 0;
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(0, ChunkSize), SocketFlags.None, deadline.Token);
                if (n == 0)
                {
                    return new StreamResult(total, Convert.ToHexStringLower(hash.GetHashAndReset()), StreamEnd.CleanEof, null, head.ToArray());
                }

                hash.AppendData(buffer, 0, n);
                if (head.Length < keep)
                {
                    head.Write(buffer, 0, (int)Math.Min(n, keep - head.Length));
                }

                total += n;
                if (onProgress is not null)
                {
                    await onProgress(total);
                }
            }
        }
        catch (Exception ex) when (Classify(ex, deadline) is { } end)
        {
            return new StreamResult(total, Convert.ToHexStringLower(hash.GetHashAndReset()), end, ex.Message, head.ToArray());
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes (the stream stays open); fewer if it ends or fails first.</summary>
    public static async Task<StreamResult> ReceiveExactlyAsync(this Socket socket, int count, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        byte[] buffer = new byte[count];
        int total = 0;
        try
        {
            while (total < count)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(total), SocketFlags.None, deadline.Token);
                if (n == 0)
                {
                    return new StreamResult(total, Sha256Hex(buffer.AsSpan(0, total)), StreamEnd.CleanEof, "ended early", buffer[..total]);
                }

                total += n;
            }

            return new StreamResult(total, Sha256Hex(buffer), StreamEnd.CleanEof, null, buffer);
        }
        catch (Exception ex) when (Classify(ex, deadline) is { } end)
        {
            return new StreamResult(total, Sha256Hex(buffer.AsSpan(0, total)), end, ex.Message, buffer[..total]);
        }
    }

    /// <summary>Sends <paramref name="request"/>, half-closes, and reads the whole answer.</summary>
    public static async Task<StreamResult> ExchangeAsync(this Socket socket, ReadOnlyMemory<byte> request, TimeSpan timeout)
    {
        StreamResult sent = await socket.SendAllAsync(request, timeout);
        if (sent.End != StreamEnd.CleanEof)
        {
            return sent;
        }

        return await socket.ReadToEndAsync(timeout);
    }

    private static StreamEnd? Classify(Exception ex, CancellationTokenSource deadline) => ex switch
    {
        OperationCanceledException when deadline.IsCancellationRequested => StreamEnd.TimedOut,
        SocketException { SocketErrorCode: SocketError.ConnectionReset } => StreamEnd.Reset,
        SocketException => StreamEnd.Error,
        IOException { InnerException: SocketException { SocketErrorCode: SocketError.ConnectionReset } } => StreamEnd.Reset,
        IOException => StreamEnd.Error,
        ObjectDisposedException => StreamEnd.Error,
        _ => null,
    };
}
