using System.Net.Sockets;
using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.Api;

/// <summary>Sends one request to a running agent's local API.</summary>
internal static class LocalApiClient
{
    private const string Hint = "is the agent running? 'systemctl status nodemesh'; or point --socket or $NODEMESH_SOCKET at its apiSocket";

    /// <summary>
    /// The agent's answer. Every failure to get one is an <see cref="IOException"/> that names the socket (an
    /// <see cref="UnauthorizedAccessException"/> when the socket is not for this user), never a parser's error.
    /// </summary>
    public static async Task<ApiResponse> SendAsync(string socketPath, ApiRequest request, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AccessDenied)
        {
            throw new UnauthorizedAccessException($"not permitted to use the agent's API socket {socketPath}: {ex.Message}", ex);
        }
        catch (SocketException ex)
        {
            // ENOENT comes back as "cannot assign requested address", which would mislead.
            string why = Directory.Exists(socketPath) ? "that is a directory, not a socket"
                : !File.Exists(socketPath) ? "no such socket"
                : ex.SocketErrorCode == SocketError.ConnectionRefused ? "nothing accepts connections there (not a socket, or an agent that stopped without removing it)"
                : ex.Message;
            throw new IOException($"cannot reach the agent at {socketPath}: {why} ({Hint})", ex);
        }

        byte[] response;
        try
        {
            byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(request, ApiJsonContext.Default.ApiRequest);
            await socket.SendAsync(bytes, SocketFlags.None, cancellationToken);
            socket.Shutdown(SocketShutdown.Send);
            response = await LocalApiServer.ReadResponseAsync(socket, cancellationToken);
        }
        catch (SocketException ex)
        {
            throw new IOException($"the agent at {socketPath} failed while answering: {ex.Message}", ex);
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new IOException($"the agent at {socketPath} did not answer in time", ex);
        }

        if (response.Length == 0)
        {
            throw new IOException($"the agent at {socketPath} closed the connection without answering (see the agent's log)");
        }

        try
        {
            return JsonSerializer.Deserialize(response, ApiJsonContext.Default.ApiResponse)
                ?? throw new IOException($"the agent at {socketPath} sent an empty answer");
        }
        catch (JsonException ex)
        {
            throw new IOException($"the agent at {socketPath} sent an answer that is not an API response: {ex.Message}", ex);
        }
    }
}
