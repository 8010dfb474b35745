using System.Diagnostics;
using System.Diagnostics.Metrics;
using NodeMesh.Contracts;

namespace NodeMesh.Telemetry;

/// <summary>
/// The agent's meters, named after what operators already chart (Istio's istio_tcp_*). Labels are bounded:
/// workload names, identities, direction, path and a fixed set of results.
/// </summary>
internal sealed class MeshMetrics : IDisposable
{
    public const string MeterName = "NodeMesh";

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _opened;
    private readonly Counter<long> _sent;
    private readonly Counter<long> _received;
    private readonly Counter<long> _refused;
    private readonly Counter<long> _tunnelRejected;
    private readonly Counter<long> _apiRefused;
    private long _apiRefusedCount;

    public MeshMetrics()
    {
        _opened = _meter.CreateCounter<long>("nodemesh_tcp_connections_closed_total", description: "Flows ended, by result.");
        _sent = _meter.CreateCounter<long>("nodemesh_tcp_sent_bytes_total", unit: "By", description: "Bytes from the client to the destination.");
        _received = _meter.CreateCounter<long>("nodemesh_tcp_received_bytes_total", unit: "By", description: "Bytes from the destination to the client.");
        _refused = _meter.CreateCounter<long>("nodemesh_flows_refused_total", description: "Flows refused, by reason.");
        _tunnelRejected = _meter.CreateCounter<long>("nodemesh_tunnel_handshakes_rejected_total", description: "Tunnel connections whose peer certificate was refused.");
        _apiRefused = _meter.CreateCounter<long>("nodemesh_api_callers_refused_total", description: "Local API connections refused: the caller is not root or in api.group.");
    }

    public void FlowEnded(FlowRecord record)
    {
        var tags = new TagList
        {
            { "direction", record.Direction },
            { "path", record.Path },
            { "source_workload", record.SourceWorkload ?? "unknown" },
            { "destination_workload", record.DestinationWorkload ?? "unknown" },
        };
        string result = record.Result.StartsWith("refused", StringComparison.Ordinal) ? "refused"
            : record.Result.StartsWith("aborted", StringComparison.Ordinal) ? "aborted" : "ok";
        tags.Add("result", result);
        _opened.Add(1, tags);
        _sent.Add(record.BytesSent, tags);
        _received.Add(record.BytesReceived, tags);
        if (result == "refused")
        {
            _refused.Add(1, new TagList { { "direction", record.Direction }, { "path", record.Path } });
        }
    }

    public void TunnelRejected() => _tunnelRejected.Add(1);

    public void ApiCallerRefused()
    {
        _apiRefused.Add(1);
        Interlocked.Increment(ref _apiRefusedCount);
    }

    /// <summary>Local API callers refused since start (shown by <c>status</c>).</summary>
    public long ApiCallersRefused => Interlocked.Read(ref _apiRefusedCount);

    public void Dispose() => _meter.Dispose();
}
