using Microsoft.Extensions.Logging;

namespace NodeMesh.Gateway;

/// <summary>The gateway's log lines (event ids 1500-1599).</summary>
internal static partial class GatewayLog
{
    [LoggerMessage(EventId = 1501, Level = LogLevel.Information, Message = "gateway: listening on {Listeners}; {Routes} routes; requests into the mesh as {Identity}")]
    public static partial void Serving(ILogger logger, string listeners, int routes, string identity);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "gateway: route {Route} to {Backend} failed: {Error} {Reason}")]
    public static partial void ForwardFailed(ILogger logger, string route, string backend, string error, string reason);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Warning, Message = "gateway: cannot connect to mesh service {Service} at {Endpoint}: {Reason}")]
    public static partial void MeshConnectFailed(ILogger logger, string service, string endpoint, string reason);

    [LoggerMessage(EventId = 1516, Level = LogLevel.Warning, Message = "gateway: listener {Listener}: HTTP/3 unavailable (QUIC needs libmsquic, not found); serving HTTP/1.1 and HTTP/2 only")]
    public static partial void Http3Unavailable(ILogger logger, string listener);

    [LoggerMessage(EventId = 1517, Level = LogLevel.Warning, Message = "gateway: connection from {Client} closed: it cancelled requests faster than gateway.limits.maxClientResetsPerSecond allows (HTTP/2 rapid reset)")]
    public static partial void ResetFlood(ILogger logger, string client);

    [LoggerMessage(EventId = 1518, Level = LogLevel.Debug, Message = "gateway: route {Route} to {Backend}: the client went away ({Error})")]
    public static partial void ClientGone(ILogger logger, string route, string backend, string error);

    [LoggerMessage(EventId = 1511, Level = LogLevel.Warning, Message = "gateway: backend {Backend}: endpoint {Endpoint} ejected for {Duration} after {Failures} failures in a row")]
    public static partial void Ejected(ILogger logger, string backend, string endpoint, string duration, int failures);

    [LoggerMessage(EventId = 1512, Level = LogLevel.Warning, Message = "gateway: backend {Backend}: endpoint {Endpoint} is unhealthy ({Reason})")]
    public static partial void Unhealthy(ILogger logger, string backend, string endpoint, string reason);

    [LoggerMessage(EventId = 1513, Level = LogLevel.Information, Message = "gateway: backend {Backend}: endpoint {Endpoint} is healthy again")]
    public static partial void Healthy(ILogger logger, string backend, string endpoint);

    [LoggerMessage(EventId = 1514, Level = LogLevel.Warning, Message = "gateway: backend {Backend}: circuit opened for {Duration} (failures above the ratio)")]
    public static partial void CircuitOpened(ILogger logger, string backend, string duration);

    [LoggerMessage(EventId = 1515, Level = LogLevel.Information, Message = "gateway: backend {Backend}: circuit closed")]
    public static partial void CircuitClosed(ILogger logger, string backend);

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
        Message = "request {Method} {Host}{Path} {Protocol} route {Route} upstream {Upstream} endpoint {Endpoint}: {Status} {Flags}; {RequestBytes} bytes in, {ResponseBytes} out, {DurationMs} ms; client {Client} caller {Caller} trace {TraceId}")]
    public static partial void Request(ILogger logger, string method, string host, string path, string protocol, string route, string upstream, string endpoint, int status, string flags,
        long requestBytes, long responseBytes, double durationMs, string client, string caller, string traceId);

    [LoggerMessage(EventId = 1519, Level = LogLevel.Warning, Message = "gateway: JWT provider {Provider}: cannot load its keys ({Problem}); the keys in force, if any, stay")]
    public static partial void JwksNotRefreshed(ILogger logger, string provider, string problem);

    [LoggerMessage(EventId = 1520, Level = LogLevel.Debug, Message = "gateway: route {Route}: request refused {Status}: {Reason}")]
    public static partial void RequestRefused(ILogger logger, string route, int status, string reason);

    [LoggerMessage(EventId = 1521, Level = LogLevel.Warning, Message = "gateway: consumer {Consumer} names plan {Plan}, which gateway.plans does not have: its requests are refused (403)")]
    public static partial void UnknownPlan(ILogger logger, string consumer, string plan);
}
