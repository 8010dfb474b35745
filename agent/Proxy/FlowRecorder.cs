using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;
using NodeMesh.Telemetry;

namespace NodeMesh.Proxy;

/// <summary>Hands each ended flow's record (once, from <see cref="ConnectionManager"/>) to the flow log and the meters.</summary>
internal sealed class FlowRecorder(FlowLog log, MeshMetrics metrics, ILoggerFactory loggers)
{
    /// <summary>Where a workload listener's failed accepts are counted and logged.</summary>
    public Sockets.AcceptFailures AcceptFailures(System.Net.Sockets.Socket listener) =>
        new("workload", listener.LocalEndPoint, loggers.CreateLogger(typeof(Sockets.AcceptLoop).FullName!), metrics);

    public void Record(FlowRecord record)
    {
        log.Add(record);
        metrics.FlowEnded(record);
    }
}
