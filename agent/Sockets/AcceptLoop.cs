using System.Net.Sockets;

namespace NodeMesh.Sockets;

/// <summary>
/// The accept loop every listener of the agent shares: accept until stopped (or the listener is closed), hand
/// each connection to <paramref name="handle"/> without waiting for it. A failed accept (out of file
/// descriptors, out of buffers, a connection aborted before it was taken…) never ends the loop, as in Kestrel:
/// it is reported and retried after a pause that grows from 10 ms to 1 s while failures go on, and is reset by
/// the next success, so an exhausted node neither loses the listener nor spins on it.
/// </summary>
internal static class AcceptLoop
{
    internal static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(10);
    internal static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(1);

    public static async Task RunAsync(Socket listener, Func<Socket, Task> handle, AcceptFailures failures, CancellationToken stopping)
    {
        TimeSpan backoff = TimeSpan.Zero;
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                // After a failed accept (not EAGAIN) .NET tries the next one at once, without waiting for an
                // epoll edge, so a connection that stayed queued through the failures is taken (AcceptExhaustionTests).
                socket = await listener.AcceptAsync(stopping);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.OperationAborted or SocketError.Shutdown || stopping.IsCancellationRequested)
            {
                // The listener was closed under us: the loop's owner is stopping it.
                return;
            }
            catch (SocketException ex)
            {
                backoff = NextBackoff(backoff);
                failures.Report(ex.SocketErrorCode, backoff);
                try
                {
                    await Task.Delay(backoff, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (backoff != TimeSpan.Zero)
            {
                backoff = TimeSpan.Zero;
                failures.Recovered();
            }

            _ = handle(socket);
        }
    }

    /// <summary>10 ms, doubling on each failure in a row, at most 1 s.</summary>
    internal static TimeSpan NextBackoff(TimeSpan current) =>
        current == TimeSpan.Zero ? FirstBackoff : TimeSpan.FromTicks(Math.Min(current.Ticks * 2, MaxBackoff.Ticks));
}
