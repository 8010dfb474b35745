using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;

namespace NodeMesh.Api;

/// <summary>
/// The agent's local API on a Unix socket (mode 0600, root only): one JSON request per connection, one JSON
/// response. The CNI shim and the <c>nodemesh workload</c> commands speak it.
/// </summary>
internal sealed partial class LocalApiServer : IAsyncDisposable
{
    private const int MaxRequestBytes = 64 * 1024;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    private readonly string _path;
    private readonly Func<ApiRequest, CancellationToken, Task<ApiResponse>> _handler;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _listener;
    private Task? _loop;

    public LocalApiServer(string path, Func<ApiRequest, CancellationToken, Task<ApiResponse>> handler, ILogger<LocalApiServer> logger)
    {
        _path = path;
        _handler = handler;
        _logger = logger;
    }

    public void Start()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        if (File.Exists(_path))
        {
            File.Delete(_path);
        }

        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(_path));
        File.SetUnixFileMode(_path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(64);
        _loop = AcceptLoopAsync(_listener);
    }

    private Task AcceptLoopAsync(Socket listener) => Sockets.AcceptLoop.RunAsync(listener, ServeAsync, new Sockets.AcceptFailures("api", listener.LocalEndPoint, _logger, metrics: null), _stopping.Token);

    private async Task ServeAsync(Socket client)
    {
        using (client)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(RequestTimeout);
            ApiResponse response;
            try
            {
                byte[] request = await ReadRequestAsync(client, timeout.Token);
                ApiRequest? parsed = JsonSerializer.Deserialize(request, ApiJsonContext.Default.ApiRequest);
                response = parsed is null
                    ? new ApiResponse { Ok = false, Error = "request is empty" }
                    : await HandleAsync(parsed, timeout.Token);
            }
            catch (JsonException ex)
            {
                response = new ApiResponse { Ok = false, Error = $"request is not valid JSON: {ex.Message}" };
            }
            catch (InvalidDataException ex)
            {
                response = new ApiResponse { Ok = false, Error = ex.Message };
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException)
            {
                Log.ClientFailed(_logger, ex.Message);
                return;
            }

            byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(response, ApiJsonContext.Default.ApiResponse);
            try
            {
                await client.SendAsync(bytes, SocketFlags.None, timeout.Token);
                client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException)
            {
                Log.ClientFailed(_logger, ex.Message);
            }
        }
    }

    /// <summary>The handler's answer; a handler that fails still answers, with the reason (the API always replies).</summary>
    private async Task<ApiResponse> HandleAsync(ApiRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return await _handler(request, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.HandlerFailed(_logger, Contracts.Printable.Of(request.Command ?? ""), ex);
            return new ApiResponse { Ok = false, Error = $"{Contracts.Printable.Of(request.Command ?? "")} failed: {ex.Message}" };
        }
    }

    /// <summary>Reads until the client half-closes; requests are bounded in size.</summary>
    internal static Task<byte[]> ReadRequestAsync(Socket client, CancellationToken cancellationToken) =>
        ReadToEndAsync(client, MaxRequestBytes, cancellationToken);

    internal static Task<byte[]> ReadResponseAsync(Socket client, CancellationToken cancellationToken) =>
        ReadToEndAsync(client, 64 * 1024 * 1024, cancellationToken);

    private static async Task<byte[]> ReadToEndAsync(Socket client, int limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[8192];
        while (true)
        {
            int read = await client.ReceiveAsync(chunk, SocketFlags.None, cancellationToken);
            if (read == 0)
            {
                return buffer.ToArray();
            }

            if (buffer.Length + read > limit)
            {
                throw new InvalidDataException($"message is larger than {limit} bytes");
            }

            buffer.Write(chunk, 0, read);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener?.Dispose();
        if (_loop is not null)
        {
            await _loop;
        }

        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Best effort: a new agent replaces a stale socket anyway.
        }

        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 500, Level = LogLevel.Debug, Message = "local API client failed: {Error}")]
        public static partial void ClientFailed(ILogger logger, string error);

        [LoggerMessage(EventId = 501, Level = LogLevel.Error, Message = "local API request {Command} failed unexpectedly; answered with the error")]
        public static partial void HandlerFailed(ILogger logger, string command, Exception exception);
    }
}
