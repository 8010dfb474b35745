using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;
using NodeMesh.Telemetry;

namespace NodeMesh.Proxy;

/// <summary>
/// Hands each flow to the meters when it starts carrying, and its record (once, from <see cref="ConnectionManager"/>)
/// to the span, the flow log, the meters and the access log when it ends.
/// </summary>
internal sealed partial class FlowRecorder(FlowLog log, MeshMetrics metrics, ILoggerFactory loggers, bool accessLog = false)
{
    /// <summary>The access log's category: one line per flow, filterable apart from the agent's other logs.</summary>
    public const string AccessLogCategory = "NodeMesh.AccessLog";

    private readonly ILogger _access = loggers.CreateLogger(AccessLogCategory);

    /// <summary>Where a workload listener's failed accepts are counted and logged.</summary>
    public Sockets.AcceptFailures AcceptFailures(System.Net.Sockets.Socket listener) =>
        new("workload", listener.LocalEndPoint, loggers.CreateLogger(typeof(Sockets.AcceptLoop).FullName!), metrics);

    public void Carrying(Flow flow) =>
        flow.Tally = metrics.Tcp.Opened(
            TcpSeriesLabels.For(flow.Direction, flow.Path, flow.SourceWorkload?.Name, flow.SourceIdentity ?? flow.SourceWorkload?.Identity.Uri,
                flow.DestinationWorkload?.Name, flow.DestinationWorkload?.Identity.Uri),
            flow);

    public void Record(Flow flow, FlowRecord record)
    {
        FlowTracing.Stop(flow.Activity, record);
        log.Add(record);
        metrics.FlowEnded(record);
        if (accessLog)
        {
            Log.Flow(_access, record.Direction, record.Path, record.Source, record.SourceIdentity ?? "-", record.Destination, record.DestinationIdentity ?? "-",
                record.Result, record.BytesSent, record.BytesReceived, Math.Round(record.DurationMs, 1));
        }

        string flags = ResponseFlags.Of(record.Outcome);
        if (flow.Tally is { } tally)
        {
            TcpMetrics.Closed(tally, flags);
        }
        else
        {
            metrics.Tcp.OpenedAndClosed(
                TcpSeriesLabels.For(record.Direction, record.Path, record.SourceWorkload, record.SourceIdentity,
                    record.DestinationWorkload, record.DestinationIdentity),
                flags);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 910, Level = LogLevel.Information,
            Message = "flow {Direction} {Path} {Source} ({SourcePrincipal}) -> {Destination} ({DestinationPrincipal}): {Result}; {BytesSent} bytes sent, {BytesReceived} received, {DurationMs} ms")]
        public static partial void Flow(ILogger logger, string direction, string path, string source, string sourcePrincipal, string destination,
            string destinationPrincipal, string result, long bytesSent, long bytesReceived, double durationMs);
    }
}
