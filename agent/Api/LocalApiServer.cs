using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;

namespace NodeMesh.Api;

/// <summary>
/// The agent's local API on a Unix socket: one JSON request per connection, one JSON response. The CNI shim and
/// the <c>nodemesh workload</c> commands speak it. Only root and members of <c>api.group</c> may use it: the
/// socket's mode (0600, or 0660 with that group) keeps others out, and each caller's credentials are checked
/// again with SO_PEERCRED, so a loosened mode or a descriptor passed to another process does not let them in.
/// </summary>
internal sealed partial class LocalApiServer : IAsyncDisposable
{
    private const int MaxRequestBytes = 64 * 1024;
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    private readonly string _path;
    private readonly Func<ApiCall, CancellationToken, Task<ApiResponse>> _handler;
    private readonly ILogger _logger;
    private readonly ApiAccess _access;
    private readonly Telemetry.MeshMetrics _metrics;
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _listener;
    private Task? _loop;

    public LocalApiServer(string path, ApiAccess access, Func<ApiCall, CancellationToken, Task<ApiResponse>> handler, Telemetry.MeshMetrics metrics,
        ILogger<LocalApiServer> logger)
    {
        _path = path;
        _access = access;
        _handler = handler;
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>
    /// Binds the socket in a private directory (0700) of the same file system, gives it its mode and group there,
    /// and only then renames it into place: it is never reachable with the wrong mode. (A restrictive umask around
    /// bind would do the same, but umask is per process and would also apply to files other threads create meanwhile.)
    /// The rename also replaces a stale socket atomically; a socket another agent still serves is not replaced.
    /// </summary>
    public void Start()
    {
        string directory = Path.GetDirectoryName(_path)!;
        Directory.CreateDirectory(directory);
        if (File.Exists(_path) && IsServed(_path))
        {
            throw new IOException($"another agent is serving the local API on {_path} (apiSocket); give this agent its own apiSocket");
        }

        string staging = Path.Combine(directory, $".{Path.GetFileName(_path)}.{Environment.ProcessId}");
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }

        Directory.CreateDirectory(staging, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            string bound = Path.Combine(staging, "agent.sock");
            listener.Bind(new UnixDomainSocketEndPoint(bound));
            if (_access.Gid is uint gid)
            {
                Interop.FileOwnership.SetGroup(bound, gid);
                File.SetUnixFileMode(bound, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
            }
            else
            {
                File.SetUnixFileMode(bound, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            listener.Listen(64);
            File.Move(bound, _path, overwrite: true);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }

        _listener = listener;
        _loop = AcceptLoopAsync(_listener);
    }

    private static bool IsServed(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private Task AcceptLoopAsync(Socket listener) => Sockets.AcceptLoop.RunAsync(listener, ServeAsync, new Sockets.AcceptFailures("api", listener.LocalEndPoint, _logger, metrics: null), _stopping.Token);

    private async Task ServeAsync(Socket client)
    {
        using (client)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(RequestTimeout);
            ApiResponse response;
            var descriptors = new List<Interop.SafeFileDescriptor>();
            try
            {
                string? refusal = _access.Refusal(Interop.PeerCredentials.Of(client));
                byte[] request = await ReadRequestAsync(client, descriptors, timeout.Token);
                if (refusal is not null)
                {
                    // Read first, so the caller gets the reply rather than a reset for its unread request.
                    _metrics.ApiCallerRefused();
                    Log.CallerRefused(_logger, refusal);
                    await ReplyAsync(client, new ApiResponse { Ok = false, Error = refusal }, timeout.Token);
                    return;
                }

                ApiRequest? parsed = JsonSerializer.Deserialize(request, ApiJsonContext.Default.ApiRequest);
                if (parsed is null)
                {
                    response = new ApiResponse { Ok = false, Error = "request is empty" };
                }
                else
                {
                    using var call = new ApiCall(parsed, descriptors);
                    response = await HandleAsync(call, timeout.Token);
                }
            }
            catch (JsonException ex)
            {
                response = new ApiResponse { Ok = false, Error = $"request is not valid JSON: {ex.Message}" };
            }
            catch (InvalidDataException ex)
            {
                response = new ApiResponse { Ok = false, Error = ex.Message };
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or IOException or Interop.InteropException)
            {
                Log.ClientFailed(_logger, ex.Message);
                return;
            }
            finally
            {
                // Whatever no handler took (a refused caller's, a request that failed to parse) is closed here.
                descriptors.ForEach(d => d.Dispose());
            }

            await ReplyAsync(client, response, timeout.Token);
        }
    }

    private async Task ReplyAsync(Socket client, ApiResponse response, CancellationToken cancellationToken)
    {
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(response, ApiJsonContext.Default.ApiResponse);
        try
        {
            await client.SendAsync(bytes, SocketFlags.None, cancellationToken);
            client.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException)
        {
            Log.ClientFailed(_logger, ex.Message);
        }
    }

    /// <summary>The handler's answer; a handler that fails still answers, with the reason (the API always replies).</summary>
    private async Task<ApiResponse> HandleAsync(ApiCall call, CancellationToken cancellationToken)
    {
        string command = Contracts.Printable.Of(call.Request.Command ?? "");
        try
        {
            return await _handler(call, cancellationToken);
        }
        catch (InvalidDataException ex)
        {
            return new ApiResponse { Ok = false, Error = $"{command}: {ex.Message}" };
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.HandlerFailed(_logger, command, ex);
            return new ApiResponse { Ok = false, Error = $"{command} failed: {ex.Message}" };
        }
    }

    /// <summary>
    /// Reads until the client half-closes; requests are bounded in size. The first read takes the descriptors sent
    /// with the request's first bytes (SCM_RIGHTS): an ordinary read would make the kernel discard them.
    /// </summary>
    internal static Task<byte[]> ReadRequestAsync(Socket client, List<Interop.SafeFileDescriptor> descriptors, CancellationToken cancellationToken) =>
        ReadToEndAsync(client, MaxRequestBytes, descriptors, cancellationToken);

    internal static Task<byte[]> ReadResponseAsync(Socket client, CancellationToken cancellationToken) =>
        ReadToEndAsync(client, 64 * 1024 * 1024, descriptors: null, cancellationToken);

    private static async Task<byte[]> ReadToEndAsync(Socket client, int limit, List<Interop.SafeFileDescriptor>? descriptors, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[8192];
        while (true)
        {
            int read = descriptors is not null && buffer.Length == 0
                ? await Interop.DescriptorPassing.ReceiveAsync(client, chunk, descriptors, cancellationToken)
                : await client.ReceiveAsync(chunk, SocketFlags.None, cancellationToken);
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

        [LoggerMessage(EventId = 503, Level = LogLevel.Warning, Message = "local API caller refused: {Reason}")]
        public static partial void CallerRefused(ILogger logger, string reason);
    }
}
