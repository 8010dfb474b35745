using System.Net.Sockets;
using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.Api;

/// <summary>Sends one request to a running agent's local API.</summary>
internal static class LocalApiClient
{
    public static async Task<ApiResponse> SendAsync(string socketPath, ApiRequest request, CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
        }
        catch (SocketException ex)
        {
            throw new IOException($"cannot reach the agent at {socketPath}: {ex.Message} (is 'nodemesh run' running, and is --socket right?)", ex);
        }

        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(request, ApiJsonContext.Default.ApiRequest);
        await socket.SendAsync(bytes, SocketFlags.None, cancellationToken);
        socket.Shutdown(SocketShutdown.Send);
        byte[] response = await LocalApiServer.ReadResponseAsync(socket, cancellationToken);
        return JsonSerializer.Deserialize(response, ApiJsonContext.Default.ApiResponse)
            ?? throw new IOException("the agent sent an empty response");
    }
}
