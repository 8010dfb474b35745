using NodeMesh.Api;
using NodeMesh.App;
using NodeMesh.Config;
using NodeMesh.Contracts;

namespace NodeMesh.Cli;

/// <summary>Finds the running agent's API socket and sends it requests.</summary>
internal static class AgentSocket
{
    public const string EnvironmentVariable = "NODEMESH_SOCKET";

    /// <summary>sockaddr_un holds 108 bytes, with the terminating NUL.</summary>
    public const int MaxPathBytes = 107;

    /// <summary>Where the path came from, for messages: "--socket", "$NODEMESH_SOCKET", "apiSocket of FILE" or "the default".</summary>
    internal sealed record Location(string Path, string Origin);

    /// <summary>
    /// <c>--socket</c>, else <c>$NODEMESH_SOCKET</c>, else the apiSocket of <c>--config FILE</c>, else the default: the
    /// order kubectl and istioctl use (flag, environment, file).
    /// </summary>
    public static Location Resolve(Options options, Func<string, string?> environment)
    {
        if (options.Get("socket") is { } flag)
        {
            return Checked(new Location(flag, "--socket"));
        }

        if (environment(EnvironmentVariable) is { Length: > 0 } fromEnvironment)
        {
            return Checked(new Location(fromEnvironment, "$" + EnvironmentVariable));
        }

        if (options.Get("config") is { } file)
        {
            AgentConfig config = ConfigLoader.Load(file);
            return Checked(new Location(config.ApiSocket, $"apiSocket of {file}"));
        }

        return new Location(CommandTable.DefaultSocket, "the default");
    }

    private static Location Checked(Location location)
    {
        int bytes = System.Text.Encoding.UTF8.GetByteCount(location.Path);
        if (bytes == 0 || bytes > MaxPathBytes)
        {
            string what = location.Origin == "--socket" ? "--socket" : location.Origin;
            throw new UsageException($"{what}: a Unix socket path has 1 to {MaxPathBytes} bytes; '{Printable.Of(location.Path)}' has {bytes}");
        }

        return location;
    }

    public static async Task<ApiResponse> SendAsync(Options options, ApiRequest request, CancellationToken cancellationToken = default)
    {
        Location socket = Resolve(options, Environment.GetEnvironmentVariable);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(60));
        ApiResponse response;
        try
        {
            response = await LocalApiClient.SendAsync(socket.Path, request, timeout.Token);
        }
        catch (IOException ex) when (socket.Origin != "--socket")
        {
            // Say where the path came from: a stale $NODEMESH_SOCKET is otherwise hard to spot.
            throw new IOException($"{ex.Message} (the socket path is from {socket.Origin})", ex);
        }

        if (!response.Ok)
        {
            throw new IOException($"the agent refused: {response.Error}");
        }

        return response;
    }
}
