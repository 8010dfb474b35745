using System.Net.Sockets;

namespace NodeMesh.Sockets;

/// <summary>
/// The accept loop every listener of the agent shares: accept until stopped (or the listener is closed), hand
/// each connection to <paramref name="handle"/> without waiting for it, and report transient accept errors
/// (such as running out of file descriptors) instead of giving up.
/// </summary>
internal static class AcceptLoop
{
    public static async Task RunAsync(Socket listener, Func<Socket, Task> handle, Action<SocketError>? acceptFailed, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stopping);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex) when (acceptFailed is not null && ex.SocketErrorCode != SocketError.OperationAborted)
            {
                acceptFailed(ex.SocketErrorCode);
                continue;
            }
            catch (SocketException)
            {
                return;
            }

            _ = handle(socket);
        }
    }
}
