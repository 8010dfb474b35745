using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// What a <see cref="TcpTestServer"/> does with each connection. Every mode records how the client's side of
/// the stream ended (clean end, reset, error) in <see cref="ServerConnection.Result"/>.
/// </summary>
internal sealed class ServerMode
{
    private ServerMode(string name, Func<Socket, ServerConnection, CancellationToken, Task<StreamResult>> serve)
    {
        Name = name;
        Serve = serve;
    }

    public string Name { get; }

    internal Func<Socket, ServerConnection, CancellationToken, Task<StreamResult>> Serve { get; }

    /// <summary>Sends back everything it reads; half-closes when the client does.</summary>
    public static ServerMode Echo { get; } = new("echo", async (socket, _, ct) =>
    {
        byte[] buffer = new byte[64 * 1024];
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long total = 0;
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0)
            {
                socket.Shutdown(SocketShutdown.Send);
                return new StreamResult(total, Convert.ToHexStringLower(hash.GetHashAndReset()), StreamEnd.CleanEof, null, []);
            }

            hash.AppendData(buffer, 0, n);
            total += n;
            await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, ct);
        }
    });

    /// <summary>Reads until the client half-closes, waits <paramref name="delay"/>, then echoes it all and closes.</summary>
    public static ServerMode EchoAfter(TimeSpan delay) => new($"echo after {delay.TotalMilliseconds} ms", async (socket, _, ct) =>
    {
        StreamResult request = await socket.ReadToEndAsync(TimeSpan.FromMinutes(1));
        if (request.End == StreamEnd.CleanEof)
        {
            await Task.Delay(delay, ct);
            await socket.SendAllAsync(request.Head, TimeSpan.FromSeconds(10));
        }

        return request;
    });

    /// <summary>
    /// Reads to the end, then answers "BYTES SHA256HEX\n" (so the client can compare without a second
    /// channel) and closes. <see cref="ServerConnection.Result"/> tells how the client's stream ended.
    /// </summary>
    public static ServerMode Sink { get; } = new("sink", async (socket, _, _) =>
    {
        StreamResult received = await socket.ReadToEndAsync(TimeSpan.FromMinutes(5), keep: 0);
        if (received.End == StreamEnd.CleanEof)
        {
            await socket.SendAllAsync(TestData.Ascii($"{received.Bytes} {received.Sha256}\n"), TimeSpan.FromSeconds(10));
        }

        return received;
    });

    /// <summary>A minimal HTTP/1.1 server: one request, a 200 answer naming the client address it saw, close.</summary>
    public static ServerMode Http { get; } = new("http", async (socket, connection, ct) =>
    {
        var request = new MemoryStream();
        byte[] buffer = new byte[8192];
        while (request.Length < 64 * 1024)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, ct);
            if (n == 0)
            {
                break;
            }

            request.Write(buffer, 0, n);
            if (Encoding.ASCII.GetString(request.GetBuffer(), 0, (int)request.Length).Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                break;
            }
        }

        byte[] head = request.ToArray();
        connection.Request = Encoding.ASCII.GetString(head);
        string body = $"hello from {connection.Server.Host.Name}; client={connection.RemoteEndPoint}\n";
        string response = $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {Encoding.ASCII.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";
        await socket.SendAllAsync(TestData.Ascii(response), TimeSpan.FromSeconds(10));
        return new StreamResult(head.Length, SocketStreams.Sha256Hex(head), StreamEnd.CleanEof, null, head);
    });

    /// <summary>
    /// Sends <paramref name="data"/> <paramref name="times"/> times and half-closes, then waits for the client's
    /// end. The result describes what was sent and how sending ended (a reset while sending shows as Reset).
    /// </summary>
    public static ServerMode Send(byte[] data, int times = 1) => new($"send {data.Length}x{times}", async (socket, _, _) =>
    {
        StreamResult sent = await socket.SendAllAsync(data, TimeSpan.FromMinutes(5), times);
        if (sent.End != StreamEnd.CleanEof)
        {
            return sent;
        }

        StreamResult tail = await socket.ReadToEndAsync(TimeSpan.FromSeconds(30), keep: 0);
        return sent with { End = tail.End, Error = tail.Error };
    });

    /// <summary>Reads <paramref name="bytes"/> bytes, then closes without reading the rest (the kernel resets the connection).</summary>
    public static ServerMode CloseAfter(int bytes) => new($"close after {bytes}", async (socket, _, _) =>
    {
        StreamResult read = await socket.ReceiveExactlyAsync(bytes, TimeSpan.FromSeconds(30));
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
        return read;
    });
}

/// <summary>One connection a <see cref="TcpTestServer"/> accepted.</summary>
internal sealed class ServerConnection
{
    private readonly TaskCompletionSource<StreamResult> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ServerConnection(TcpTestServer server, IPEndPoint remoteEndPoint)
    {
        Server = server;
        RemoteEndPoint = remoteEndPoint;
    }

    public TcpTestServer Server { get; }

    /// <summary>The client address as the server's kernel reports it (what an application would log).</summary>
    public IPEndPoint RemoteEndPoint { get; }

    /// <summary>The request head, for <see cref="ServerMode.Http"/>.</summary>
    public string? Request { get; set; }

    /// <summary>Completes when the mode has finished with the connection.</summary>
    public Task<StreamResult> Result => _result.Task;

    internal void Complete(StreamResult result) => _result.TrySetResult(result);
}

/// <summary>
/// A TCP server listening inside a namespace (a pod or the external host), created in-process: the listening
/// socket is made on a thread that has entered the namespace, so it lives there for good.
/// </summary>
internal sealed class TcpTestServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly ServerMode _mode;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentQueue<ServerConnection> _connections = new();
    private readonly ConcurrentBag<Socket> _sockets = [];
    private readonly SemaphoreSlim _accepted = new(0);
    private readonly Task _acceptLoop;

    internal TcpTestServer(NetnsHost host, Socket listener, ServerMode mode)
    {
        Host = host;
        _listener = listener;
        _mode = mode;
        EndPoint = new IPEndPoint(host.Ip, ((IPEndPoint)listener.LocalEndPoint!).Port);
        _acceptLoop = AcceptLoopAsync();
    }

    public NetnsHost Host { get; }

    /// <summary>The host's address and the listening port: where clients connect.</summary>
    public IPEndPoint EndPoint { get; }

    public IReadOnlyList<ServerConnection> Connections => _connections.ToArray();

    /// <summary>Waits until at least <paramref name="count"/> connections were accepted.</summary>
    public async Task<IReadOnlyList<ServerConnection>> WaitForConnectionsAsync(int count, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            while (_connections.Count < count)
            {
                await _accepted.WaitAsync(deadline.Token);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Host.Name} server on {EndPoint} accepted {_connections.Count} of {count} connections within {timeout.TotalSeconds} s");
        }

        return Connections;
    }

    /// <summary>The first accepted connection's finished result.</summary>
    public async Task<(ServerConnection Connection, StreamResult Result)> SingleResultAsync(TimeSpan timeout)
    {
        ServerConnection connection = (await WaitForConnectionsAsync(1, timeout))[0];
        StreamResult result = await connection.Result.WaitAsync(timeout);
        return (connection, result);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            _sockets.Add(client);
            var connection = new ServerConnection(this, (IPEndPoint)client.RemoteEndPoint!);
            _connections.Enqueue(connection);
            _accepted.Release();
            _ = ServeAsync(client, connection);
        }
    }

    private async Task ServeAsync(Socket client, ServerConnection connection)
    {
        try
        {
            connection.Complete(await _mode.Serve(client, connection, _stopping.Token));
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            connection.Complete(new StreamResult(0, "", StreamEnd.Error, "server stopped", []));
        }
        catch (SocketException ex)
        {
            StreamEnd end = ex.SocketErrorCode == SocketError.ConnectionReset ? StreamEnd.Reset : StreamEnd.Error;
            connection.Complete(new StreamResult(0, "", end, ex.Message, []));
        }
        catch (Exception ex)
        {
            connection.Complete(new StreamResult(0, "", StreamEnd.Error, ex.ToString(), []));
        }
        finally
        {
            client.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Dispose();
        await _acceptLoop;
        foreach (Socket socket in _sockets)
        {
            socket.Dispose();
        }

        _stopping.Dispose();
        _accepted.Dispose();
    }
}
