using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;
using NodeMesh.Copy;
using NodeMesh.State;
using NodeMesh.Telemetry;

namespace NodeMesh.Proxy;

/// <summary>Builds a flow's record once, when it ends, and hands it to the flow log and the meters.</summary>
internal sealed class FlowRecorder(FlowLog log, MeshMetrics metrics, ILoggerFactory loggers)
{
    private int _active;

    /// <summary>Flows being handled now (for draining at shutdown).</summary>
    public int Active => Volatile.Read(ref _active);

    public void Begin() => Interlocked.Increment(ref _active);

    public void End() => Interlocked.Decrement(ref _active);

    /// <summary>Where a workload listener's failed accepts are counted and logged.</summary>
    public Sockets.AcceptFailures AcceptFailures(System.Net.Sockets.Socket listener) =>
        new("workload", listener.LocalEndPoint, loggers.CreateLogger(typeof(Sockets.AcceptLoop).FullName!), metrics);

    public void Record(
        string direction,
        string path,
        IPEndPoint source,
        IPEndPoint destination,
        Workload? sourceWorkload,
        Workload? destinationWorkload,
        string? sourceIdentity,
        bool encrypted,
        long startTimestamp,
        CopyResult copy,
        string? refusal = null)
    {
        string result = refusal is not null ? "refused: " + refusal : copy.Error is null ? "ok" : "aborted: " + copy.Error;
        var record = new FlowRecord
        {
            Direction = direction,
            Path = path,
            Source = source.ToString(),
            Destination = destination.ToString(),
            SourceWorkload = sourceWorkload?.Name,
            DestinationWorkload = destinationWorkload?.Name,
            SourceIdentity = sourceIdentity ?? sourceWorkload?.Identity.Uri,
            DestinationIdentity = destinationWorkload?.Identity.Uri,
            Encrypted = encrypted,
            BytesSent = copy.BytesFromClient,
            BytesReceived = copy.BytesToClient,
            DurationMs = Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds,
            Result = result,
            Ended = DateTimeOffset.UtcNow,
        };
        log.Add(record);
        metrics.FlowEnded(record);
    }
}
