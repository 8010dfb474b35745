using System.Net.Sockets;
using NodeMesh.Interop;
using NodeMesh.Tunnel;

namespace NodeMesh.Copy;

/// <summary>The outcome of a flow's copy, recorded once when the flow ends.</summary>
/// <param name="Error">Why the flow was aborted, or null if both directions ended in order.</param>
internal readonly record struct CopyResult(long BytesFromClient, long BytesToClient, string? Error);

/// <summary>
/// Copies both directions of a flow until both have ended. If either direction fails, both ends are
/// aborted with a reset so neither application mistakes a broken flow for a complete one.
/// </summary>
internal static class BidirectionalCopy
{
    public static async Task<CopyResult> RunAsync(Socket client, Socket upstream, TransferCounters counters, CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task up = Pump.SocketToSocketAsync(client, upstream, counters.FromClientBox, abort.Token);
        Task down = Pump.SocketToSocketAsync(upstream, client, counters.ToClientBox, abort.Token);
        string? error = await WaitBothAsync(up, down, abort);
        if (error is not null)
        {
            Abort(client);
            Abort(upstream);
        }

        return new CopyResult(counters.FromClient, counters.ToClient, error);
    }

    public static async Task<CopyResult> RunAsync(Socket client, TunnelStream tunnel, TransferCounters counters, CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        counters.Tunnel = tunnel;
        Task up = Pump.SocketToTunnelAsync(client, tunnel, counters.FromClientBox, abort.Token);
        Task down = Pump.TunnelToSocketAsync(tunnel, client, counters.ToClientBox, abort.Token);
        string? error = await WaitBothAsync(up, down, abort);
        if (error is not null)
        {
            Abort(client);
            await tunnel.ResetAsync(TunnelError.Cancelled);
        }

        return new CopyResult(counters.FromClient, counters.ToClient, error);
    }

    /// <summary>Resets the connection: SO_LINGER {on, 0} then close sends RST and discards unsent data.</summary>
    public static void Abort(Socket socket)
    {
        try
        {
            SocketOptions.SetAbortOnClose(socket);
        }
        catch (Exception ex) when (ex is InteropException or ObjectDisposedException)
        {
            // Already closed: nothing left to reset.
        }

        socket.Dispose();
    }

    /// <summary>Closes after an orderly end: FIN, not RST.</summary>
    public static void Close(Socket socket)
    {
        try
        {
            SocketOptions.SetGracefulClose(socket);
        }
        catch (Exception ex) when (ex is InteropException or ObjectDisposedException)
        {
            // Already closed.
        }

        socket.Dispose();
    }

    private static async Task<string?> WaitBothAsync(Task up, Task down, CancellationTokenSource abort)
    {
        Task first = await Task.WhenAny(up, down);
        if (first.IsFaulted || first.IsCanceled)
        {
            await abort.CancelAsync();
        }

        try
        {
            await Task.WhenAll(up, down);
            return null;
        }
        catch (Exception)
        {
            await abort.CancelAsync();
            Exception? failure = (up.IsFaulted ? up.Exception : down.Exception)?.InnerException;
            return failure?.Message ?? (up.IsCanceled || down.IsCanceled ? "canceled" : "failed");
        }
    }
}
