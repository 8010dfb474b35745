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
    private readonly Counter<long> _tunnelClosed;
    private readonly Counter<long> _tunnelStreamsRefused;
    private readonly Counter<long> _tunnelDialFailures;
    private readonly Counter<long> _acceptFailed;
    private readonly Counter<long> _connectionsShed;
    private readonly Counter<long> _apiRefused;
    private readonly Counter<long> _memoryReclaimed;
    private long _apiRefusedCount;

    public MeshMetrics()
    {
        _opened = _meter.CreateCounter<long>("nodemesh_tcp_connections_closed_total", description: "Flows ended, by result.");
        _sent = _meter.CreateCounter<long>("nodemesh_tcp_sent_bytes_total", unit: "By", description: "Bytes from the client to the destination.");
        _received = _meter.CreateCounter<long>("nodemesh_tcp_received_bytes_total", unit: "By", description: "Bytes from the destination to the client.");
        _refused = _meter.CreateCounter<long>("nodemesh_flows_refused_total", description: "Flows refused, by reason.");
        _tunnelRejected = _meter.CreateCounter<long>("nodemesh_tunnel_handshakes_rejected_total", description: "Tunnel connections whose peer certificate was refused.");
        _tunnelClosed = _meter.CreateCounter<long>("nodemesh_tunnel_connections_closed_total", description: "Tunnel connections ended, by reason (None is orderly).");
        _tunnelStreamsRefused = _meter.CreateCounter<long>("nodemesh_tunnel_streams_refused_total", description: "Streams a peer opened beyond a limit, by limit.");
        _tunnelDialFailures = _meter.CreateCounter<long>("nodemesh_tunnel_dial_failures_total", description: "Tunnel connections that could not be opened.");
        _acceptFailed = _meter.CreateCounter<long>("nodemesh_accept_failures_total", description: "Failed accepts (fd or buffer exhaustion, aborted connections), by listener and error.");
        _connectionsShed = _meter.CreateCounter<long>("nodemesh_connections_shed_total",
            description: "Connections closed before authentication because a limit was reached or the handshake timed out, by listener and reason.");
        _apiRefused = _meter.CreateCounter<long>("nodemesh_api_callers_refused_total", description: "Local API connections refused: the caller is not root or in api.group.");
        _memoryReclaimed = _meter.CreateCounter<long>("nodemesh_memory_reclaimed_bytes_total", unit: "By", description: "Resident memory given back after many flows ended.");
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
        string result = record.Outcome switch
        {
            FlowOutcome.Ok => "ok",
            FlowOutcome.Refused or FlowOutcome.Denied => "refused",
            FlowOutcome.Aborted or FlowOutcome.ClosedByPolicy => "aborted",
            _ => "failed",
        };
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

    public void TunnelClosed(string reason) => _tunnelClosed.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void TunnelStreamRefused(string limit) => _tunnelStreamsRefused.Add(1, new KeyValuePair<string, object?>("limit", limit));

    public void TunnelDialFailed() => _tunnelDialFailures.Add(1);

    /// <param name="listener"><c>workload</c>, <c>tunnel</c>, <c>ca</c> or <c>api</c>.</param>
    public void MemoryReclaimed(long bytes) => _memoryReclaimed.Add(bytes);

    public void AcceptFailed(string listener, string error) => _acceptFailed.Add(1, new TagList { { "listener", listener }, { "error", error } });

    /// <param name="reason"><c>total-limit</c>, <c>address-limit</c> or <c>handshake-timeout</c>.</param>
    public void ConnectionShed(string listener, string reason) => _connectionsShed.Add(1, new TagList { { "listener", listener }, { "reason", reason } });

    public void ApiCallerRefused()
    {
        _apiRefused.Add(1);
        Interlocked.Increment(ref _apiRefusedCount);
    }

    /// <summary>Local API callers refused since start (shown by <c>status</c>).</summary>
    public long ApiCallersRefused => Interlocked.Read(ref _apiRefusedCount);

    public void Dispose() => _meter.Dispose();
}
