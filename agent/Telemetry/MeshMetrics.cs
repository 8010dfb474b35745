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
    private readonly Counter<long> _refused;
    private readonly Counter<long> _handshakeFailures;
    private readonly Counter<long> _tunnelClosed;
    private readonly Counter<long> _tunnelStreamsRefused;
    private readonly Counter<long> _tunnelDialFailures;
    private readonly Counter<long> _acceptFailed;
    private readonly Counter<long> _connectionsShed;
    private readonly Counter<long> _apiRefused;
    private readonly Counter<long> _memoryReclaimed;
    private readonly Counter<long> _unknownDestinations;
    private readonly Counter<long> _registryRefused;
    private readonly Counter<long> _registryResyncs;
    private readonly Counter<long> _serviceEjections;
    private readonly Counter<long> _serviceRetries;
    private readonly Counter<long> _cniRequests;
    private readonly Counter<long> _podsReconciled;
    private long _apiRefusedCount;

    /// <summary>The meter itself, for a collector that must see this instance's measurements only (tests).</summary>
    public Meter Meter => _meter;

    public MeshMetrics()
    {
        Tcp = new TcpMetrics(_meter);
        _refused = _meter.CreateCounter<long>("nodemesh_flows_refused_total", description: "Flows refused before carrying anything, by direction, path and reason (refused or denied).");
        _handshakeFailures = _meter.CreateCounter<long>("nodemesh_tunnel_handshake_failures_total",
            description: "Tunnel handshakes that failed after the TCP connection was made, by direction (inbound: a peer dialled us) and reason.");
        _tunnelClosed = _meter.CreateCounter<long>("nodemesh_tunnel_connections_closed_total", description: "Tunnel connections ended, by reason (None is orderly).");
        _tunnelStreamsRefused = _meter.CreateCounter<long>("nodemesh_tunnel_streams_refused_total", description: "Streams a peer opened beyond a limit, by limit.");
        _tunnelDialFailures = _meter.CreateCounter<long>("nodemesh_tunnel_dial_failures_total", description: "Tunnel connections that could not be opened, by reason (connect, timeout, handshake).");
        _acceptFailed = _meter.CreateCounter<long>("nodemesh_accept_failures_total", description: "Failed accepts (fd or buffer exhaustion, aborted connections), by listener and error.");
        _connectionsShed = _meter.CreateCounter<long>("nodemesh_connections_shed_total",
            description: "Connections closed before authentication because a limit was reached or the handshake timed out, by listener and reason.");
        _apiRefused = _meter.CreateCounter<long>("nodemesh_api_callers_refused_total", description: "Local API connections refused: the caller is not root or in api.group.");
        _unknownDestinations = _meter.CreateCounter<long>("nodemesh_mesh_unknown_destinations_total",
            description: "Flows to an address in mesh.cidrs that the registry did not know within mesh.holdTimeout: refused, never passed through.");
        _registryRefused = _meter.CreateCounter<long>("nodemesh_registry_entries_refused_total", description: "Registry entries refused as malformed (each with a log line naming the key and the fault).");
        _registryResyncs = _meter.CreateCounter<long>("nodemesh_registry_resyncs_total", description: "Times the registry source lost its store (disconnected) or had to list again (compacted), by reason.");
        _serviceEjections = _meter.CreateCounter<long>("nodemesh_service_endpoint_ejections_total",
            description: "Service endpoints marked down after a failed connect (no new flows for 10 s while others are up), by service.");
        _serviceRetries = _meter.CreateCounter<long>("nodemesh_service_retries_total", description: "Service flows tried again on another endpoint after a failed connect, by service.");
        _cniRequests = _meter.CreateCounter<long>("nodemesh_cni_requests_total",
            description: "Requests of the CNI shim, by command (pod-add, pod-check, pod-remove, pod-gc) and result (ok, refused: the pod's ADD failed and it is not started).");
        _podsReconciled = _meter.CreateCounter<long>("nodemesh_pods_reconciled_total",
            description: "The start-up reconcile with the API server, by action: removed (a CNI pod no longer placed here), captured (a pod left uncaptured), not_found (one on this node whose namespace was not found or could not be captured).");
        _memoryReclaimed = _meter.CreateCounter<long>("nodemesh_memory_reclaimed_bytes_total", unit: "By", description: "Resident memory given back after many flows ended.");
    }

    /// <summary>
    /// The agent's state as gauges, read at each collection: captured workloads, seconds until each certificate
    /// expires, open tunnel connections by direction, and whether each configured peer is reachable. Called once,
    /// when the agent has started.
    /// </summary>
    public void ObserveAgent(Func<int> capturedWorkloads, Func<IEnumerable<(string Identity, DateTimeOffset NotAfter)>> certificates,
        Func<(int Outbound, int Inbound)> tunnels, Func<IEnumerable<(string Peer, bool Reachable)>> peers)
    {
        _meter.CreateObservableGauge("nodemesh_workloads_captured", capturedWorkloads, description: "Local workloads whose traffic the agent captures.");
        _meter.CreateObservableGauge("nodemesh_certificate_expiry_seconds",
            () => certificates().Select(c => new Measurement<double>(Math.Round((c.NotAfter - DateTimeOffset.UtcNow).TotalSeconds), new KeyValuePair<string, object?>("identity", c.Identity))),
            unit: "s", description: "Seconds until each certificate the agent serves expires (negative: expired).");
        _meter.CreateObservableGauge("nodemesh_tunnel_connections", () =>
        {
            (int outbound, int inbound) = tunnels();
            return new[]
            {
                new Measurement<int>(outbound, new KeyValuePair<string, object?>("direction", "outbound")),
                new Measurement<int>(inbound, new KeyValuePair<string, object?>("direction", "inbound")),
            };
        }, description: "Tunnel connections open now: dialled by this agent (outbound) or accepted from peers (inbound).");
        _meter.CreateObservableGauge("nodemesh_peer_reachable",
            () => peers().Select(p => new Measurement<int>(p.Reachable ? 1 : 0, new KeyValuePair<string, object?>("peer", p.Peer))),
            description: "1 if the last attempt to reach the peer node's agent succeeded (or none failed yet), else 0.");
    }

    /// <summary>The registry source's state as gauges: synced (1: listed and connected), the store revision, and seconds since the store last confirmed it (-1: never).</summary>
    public void ObserveRegistry(Func<(bool Synced, long Revision, double LagSeconds)> registry)
    {
        _meter.CreateObservableGauge("nodemesh_registry_synced", () => registry().Synced ? 1 : 0, description: "1 when the registry is listed from its store and the store is reachable; 0 while it serves the last registry it had.");
        _meter.CreateObservableGauge("nodemesh_registry_revision", () => registry().Revision, description: "The store revision the registry reflects.");
        _meter.CreateObservableGauge("nodemesh_registry_lag_seconds", () => registry().LagSeconds, unit: "s", description: "Seconds since the store last confirmed the registry is current (a change or a progress notification); -1 before the first.");
    }

    public void CniRequest(string command, bool ok) =>
        _cniRequests.Add(1, new KeyValuePair<string, object?>("command", command), new KeyValuePair<string, object?>("result", ok ? "ok" : "refused"));

    public void PodsReconciled(int removed, int captured, int notFound)
    {
        _podsReconciled.Add(removed, new KeyValuePair<string, object?>("action", "removed"));
        _podsReconciled.Add(captured, new KeyValuePair<string, object?>("action", "captured"));
        _podsReconciled.Add(notFound, new KeyValuePair<string, object?>("action", "not_found"));
    }

    public void UnknownMeshDestination() => _unknownDestinations.Add(1);

    public void ServiceEndpointEjected(string service) => _serviceEjections.Add(1, new KeyValuePair<string, object?>("service", service));

    public void ServiceRetried(string service) => _serviceRetries.Add(1, new KeyValuePair<string, object?>("service", service));

    public void RegistryEntriesRefused(int count) => _registryRefused.Add(count);

    /// <param name="reason"><c>disconnected</c> or <c>compacted</c>.</param>
    public void RegistryResynced(string reason) => _registryResyncs.Add(1, new KeyValuePair<string, object?>("reason", reason));

    /// <summary>The Istio TCP metrics (istio_tcp_*).</summary>
    public TcpMetrics Tcp { get; }

    public void FlowEnded(FlowRecord record)
    {
        if (record.Outcome is FlowOutcome.Refused or FlowOutcome.Denied)
        {
            _refused.Add(1, new TagList
            {
                { "direction", record.Direction },
                { "path", record.Path },
                { "reason", record.Outcome == FlowOutcome.Denied ? "denied" : "refused" },
            });
        }
    }

    /// <param name="direction"><c>inbound</c> or <c>outbound</c>.</param>
    /// <param name="reason">One of <c>HandshakeFailure.All</c>.</param>
    public void TunnelHandshakeFailed(string direction, string reason) =>
        _handshakeFailures.Add(1, new TagList { { "direction", direction }, { "reason", reason } });

    public void TunnelClosed(string reason) => _tunnelClosed.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void TunnelStreamRefused(string limit) => _tunnelStreamsRefused.Add(1, new KeyValuePair<string, object?>("limit", limit));

    /// <param name="reason"><c>connect</c>, <c>timeout</c> or <c>handshake</c>.</param>
    public void TunnelDialFailed(string reason) => _tunnelDialFailures.Add(1, new KeyValuePair<string, object?>("reason", reason));

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
