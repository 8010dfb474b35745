using System.Net;
using System.Net.Sockets;
using NodeMesh.Capture;

namespace NodeMesh.Proxy.Inbound;

/// <summary>
/// Connects to a local workload from inside its own namespace, bound transparently to the real client's
/// address so the application sees who is calling. The capture rules' connmark and policy route bring the
/// replies back to this socket.
/// </summary>
internal static class WorkloadDelivery
{
    /// <param name="connectTimeout">tunnel.connectTimeoutSeconds: past it the connect counts as timed out.</param>
    public static async Task<(Socket? Socket, SocketError Error)> ConnectAsync(
        WorkloadCapture destination, IPEndPoint client, IPEndPoint target, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        Socket socket;
        try
        {
            socket = await destination.CreateSocketAsync(transparent: true);
        }
        catch (SocketException ex)
        {
            // Out of descriptors or buffers: this flow is refused with the reason, the others go on.
            return (null, ex.SocketErrorCode);
        }

        try
        {
            socket.Bind(new IPEndPoint(client.Address, 0));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(connectTimeout);
            await socket.ConnectAsync(target, timeout.Token);
            return (socket, SocketError.Success);
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            return (null, ex.SocketErrorCode);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            return (null, SocketError.TimedOut);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
