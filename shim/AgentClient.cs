using System.Net.Sockets;
using System.Text.Json;
using NodeMesh.Contracts;
using NodeMesh.Interop;

namespace NodeMesh.Shim;

/// <summary>
/// One request to the agent's local API on its Unix socket, the pod's namespace attached as a descriptor where the
/// command needs it. Failing to reach the agent is <see cref="AgentUnreachableException"/>, so each command can
/// decide what that means (ADD fails closed, DEL succeeds).
/// </summary>
internal static class AgentClient
{
    private const int MaxResponseBytes = 4 * 1024 * 1024;

    public static async Task<ApiResponse> SendAsync(string socketPath, ApiRequest request, SafeFileDescriptor? descriptor, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), deadline.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            string why = !File.Exists(socketPath) ? "no such socket (is the agent running on this node?)"
                : ex is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0.#} s"
                : ((SocketException)ex).SocketErrorCode == SocketError.ConnectionRefused ? "nothing accepts connections there (the agent is not running)"
                : ex.Message;
            throw new AgentUnreachableException($"cannot reach the NodeMesh agent at {socketPath}: {why}", ex);
        }

        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(request, ApiJsonContext.Default.ApiRequest);
        try
        {
            int sent = 0;
            if (descriptor is not null)
            {
                // The descriptor rides on the first bytes. A request of a few KiB fits an empty Unix socket's buffer, so
                // this one sendmsg on the non-blocking socket takes it whole or fails (EAGAIN: reported, never retried blind).
                sent = DescriptorPassing.Send(socket, bytes, descriptor);
            }

            await socket.SendAsync(bytes.AsMemory(sent), SocketFlags.None, deadline.Token);
            socket.Shutdown(SocketShutdown.Send);
            byte[] response = await ReadAsync(socket, deadline.Token);
            if (response.Length == 0)
            {
                throw new AgentUnreachableException($"the NodeMesh agent at {socketPath} closed the connection without answering (see its log)", null);
            }

            return JsonSerializer.Deserialize(response, ApiJsonContext.Default.ApiResponse)
                ?? throw new AgentUnreachableException($"the NodeMesh agent at {socketPath} sent an empty answer", null);
        }
        catch (OperationCanceledException ex)
        {
            throw new AgentUnreachableException($"the NodeMesh agent at {socketPath} did not answer within {timeout.TotalSeconds:0.#} s", ex);
        }
        catch (Exception ex) when (ex is SocketException or InteropException)
        {
            throw new AgentUnreachableException($"the NodeMesh agent at {socketPath} failed while answering: {ex.Message}", ex);
        }
        catch (JsonException ex)
        {
            throw new AgentUnreachableException($"the NodeMesh agent at {socketPath} sent an answer that is not an API response: {ex.Message}", ex);
        }
    }

    private static async Task<byte[]> ReadAsync(Socket socket, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[16 * 1024];
        int read;
        while ((read = await socket.ReceiveAsync(chunk, SocketFlags.None, cancellationToken)) > 0)
        {
            if (buffer.Length + read > MaxResponseBytes)
            {
                throw new AgentUnreachableException($"the agent's answer is larger than {MaxResponseBytes} bytes", null);
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }
}
