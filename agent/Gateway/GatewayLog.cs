using Microsoft.Extensions.Logging;

namespace NodeMesh.Gateway;

/// <summary>The gateway's log lines (event ids 1500-1599).</summary>
internal static partial class GatewayLog
{
    [LoggerMessage(EventId = 1501, Level = LogLevel.Information, Message = "gateway: listening on {Listeners}; {Routes} routes; requests into the mesh as {Identity}")]
    public static partial void Serving(ILogger logger, string listeners, int routes, string identity);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "gateway: route {Route} to {Backend} failed: {Error} {Reason}")]
    public static partial void ForwardFailed(ILogger logger, string route, string backend, string error, string reason);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Warning, Message = "gateway: cannot connect to mesh service {Service}:{Port}: {Reason}")]
    public static partial void MeshConnectFailed(ILogger logger, string service, int port, string reason);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Information, Message = "gateway: listener {Listener}'s certificates reloaded")]
    public static partial void CertificateReloaded(ILogger logger, string listener);

    [LoggerMessage(EventId = 1505, Level = LogLevel.Error, Message = "gateway: listener {Listener}'s certificates changed but cannot be used ({Reason}); the previous ones stay in force")]
    public static partial void CertificateNotReloaded(ILogger logger, string listener, string reason);

    [LoggerMessage(EventId = 1506, Level = LogLevel.Information, Message = "gateway: route {Route}: retrying after {Reason} from {Backend} (retry {Retry})")]
    public static partial void Retrying(ILogger logger, string route, string backend, string reason, int retry);

    [LoggerMessage(EventId = 1507, Level = LogLevel.Debug, Message = "gateway: mirror of route {Route} to {Backend} failed: {Reason}")]
    public static partial void MirrorFailed(ILogger logger, string route, string backend, string reason);

    /// <summary>The access log line of one request (category NodeMesh.AccessLog, with the flows' lines).</summary>
    [LoggerMessage(EventId = 1510, Level = LogLevel.Information,
        Message = "request {Method} {Host}{Path} {Protocol} route {Route} upstream {Upstream}: {Status} {Flags}; {RequestBytes} bytes in, {ResponseBytes} out, {DurationMs} ms; client {Client} trace {TraceId}")]
    public static partial void Request(ILogger logger, string method, string host, string path, string protocol, string route, string upstream, int status, string flags,
        long requestBytes, long responseBytes, double durationMs, string client, string traceId);
}
