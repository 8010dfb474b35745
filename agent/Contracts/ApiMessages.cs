using System.Text.Json.Serialization;

namespace NodeMesh.Contracts;

/// <summary>A request on the agent's local Unix socket: one JSON object per connection, then one response.</summary>
public sealed record ApiRequest
{
    /// <summary>
    /// "workload-add", "workload-remove", "workload-list", "flows", "status", "ready", or from the CNI shim "pod-add",
    /// "pod-check", "pod-remove" and "pod-gc"; "consumer-create", "consumer-list", "consumer-get", "consumer-update",
    /// "consumer-enable", "consumer-disable", "consumer-delete", "consumer-issue-key", "consumer-rotate-key", "consumer-revoke-key".
    /// </summary>
    public string Command { get; init; } = "";
    public WorkloadInfo? Workload { get; init; }
    public string? Name { get; init; }

    /// <summary>"pod-add", "pod-check", "pod-remove": the pod (its namespace rides along as a descriptor on add and check).</summary>
    public PodInfo? Pod { get; init; }

    /// <summary>"pod-gc": the container ids the runtime still has; captured pods of any other are removed.</summary>
    public IReadOnlyList<string>? ValidContainers { get; init; }

    /// <summary>"flows": only flows recorded after this sequence number (a cursor from <see cref="ApiResponse.FlowCursor"/>).</summary>
    public long? Since { get; init; }

    /// <summary>"consumer-*": the consumer and what changes.</summary>
    public ConsumerChange? Consumer { get; init; }
}

public sealed record ApiResponse
{
    public bool Ok { get; init; }
    public string? Error { get; init; }
    public IReadOnlyList<WorkloadInfo>? Workloads { get; init; }
    public IReadOnlyList<FlowRecord>? Flows { get; init; }
    public AgentStatus? Status { get; init; }

    /// <summary>"flows": the sequence number of the newest flow recorded so far; the next request's <see cref="ApiRequest.Since"/>.</summary>
    public long? FlowCursor { get; init; }

    /// <summary>"consumer-*": the consumers listed, or the one changed.</summary>
    public IReadOnlyList<ConsumerInfo>? Consumers { get; init; }

    /// <summary>"consumer-issue-key", "consumer-rotate-key": the new API key, shown this once and never stored.</summary>
    public string? IssuedKey { get; init; }
}

public sealed record AgentStatus
{
    public string Node { get; init; } = "";
    public string Version { get; init; } = "";
    public int TunnelConnections { get; init; }
    public long TunnelConnectionsOpened { get; init; }
    /// <summary>Flows open now, on every path (being set up, carried, or ending).</summary>
    public int ActiveFlows { get; init; }
    public long FlowsRefused { get; init; }
    public long FlowsDenied { get; init; }
    public long FlowsDryRunDenied { get; init; }

    /// <summary>Local API callers refused because they are not root or in api.group.</summary>
    public long ApiCallersRefused { get; init; }
    public int Policies { get; init; }
    public IReadOnlyList<string> Transports { get; init; } = [];
    public long ManagedHeapBytes { get; init; }
    public long ManagedCommittedBytes { get; init; }
    public long ResidentBytes { get; init; }

    /// <summary>Every certificate the agent holds or seeks: the node's and one per local workload identity.</summary>
    public IReadOnlyList<CertificateInfo> Certificates { get; init; } = [];

    /// <summary>When the agent started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Flows recorded since the start (ended or refused).</summary>
    public long FlowsRecorded { get; init; }

    /// <summary>The tunnel listener: where it listens and the connections peers opened to it.</summary>
    public TunnelListenerStatus? Listener { get; init; }

    /// <summary>Every configured peer node, with the tunnels this agent holds to it.</summary>
    public IReadOnlyList<PeerStatus> Peers { get; init; } = [];

    /// <summary>The local workloads, as <c>workload list</c> shows them.</summary>
    public IReadOnlyList<WorkloadInfo> Workloads { get; init; } = [];

    /// <summary>Where the registry of nodes and workloads comes from, and how current it is.</summary>
    public RegistryStatus? Registry { get; init; }
}

/// <summary>The registry source as the agent sees it.</summary>
public sealed record RegistryStatus
{
    /// <summary>"static" (the config file) or "etcd".</summary>
    public string Source { get; init; } = "";

    /// <summary>"synced" (listed and watching), "syncing" (not listed yet), "disconnected" (serving the last registry it had).</summary>
    public string State { get; init; } = "";

    /// <summary>The store revision the registry reflects (0: static, or not listed yet).</summary>
    public long Revision { get; init; }

    /// <summary>How long since the store last confirmed the registry is current (a change or a progress notification).</summary>
    public double? LagSeconds { get; init; }

    public int Nodes { get; init; }

    public int RemoteWorkloads { get; init; }

    /// <summary>Entries refused as malformed since the start.</summary>
    public long EntriesRefused { get; init; }

    /// <summary>Whether this node's entries are published under a live lease (etcd).</summary>
    public bool? Published { get; init; }

    public string? LastError { get; init; }

    public DateTimeOffset? DisconnectedSince { get; init; }
}

/// <summary>A configured peer node and this agent's tunnels to it (all source identities together, and each).</summary>
public sealed record PeerStatus
{
    public string Node { get; init; } = "";

    /// <summary>ADDRESS:PORT of its tunnel listener.</summary>
    public string Address { get; init; } = "";
    public int Connections { get; init; }
    public int Streams { get; init; }

    /// <summary>
    /// "connected"; "dialling"; "backoff" (the last dial failed slowly: flows fail at once until <see cref="RetryAt"/>);
    /// "failing" (the last dial was refused; the next flow tries again); "idle" (no connection, nothing failed).
    /// </summary>
    public string State { get; init; } = "";
    public string? LastError { get; init; }
    public DateTimeOffset? RetryAt { get; init; }
    public IReadOnlyList<TunnelPeerState> Tunnels { get; init; } = [];
}

public sealed record TunnelListenerStatus
{
    /// <summary>ADDRESS:PORT.</summary>
    public string Address { get; init; } = "";
    public int Connections { get; init; }
    public int Streams { get; init; }
    public IReadOnlyList<TunnelConnectionState> Accepted { get; init; } = [];
}

/// <summary>One identity's certificate as the agent holds it.</summary>
public sealed record CertificateInfo
{
    public string Identity { get; init; } = "";

    /// <summary>When the certificate being served expires; null if there is none.</summary>
    public DateTimeOffset? NotAfter { get; init; }

    /// <summary>Why the last attempt to get one failed; null after a success.</summary>
    public string? Error { get; init; }

    /// <summary>"node" (this agent's own, for tunnels) or "workload".</summary>
    public string? Kind { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, AllowDuplicateProperties = false)]
[JsonSerializable(typeof(ApiRequest))]
[JsonSerializable(typeof(ApiResponse))]
[JsonSerializable(typeof(List<WorkloadInfo>))]
[JsonSerializable(typeof(FlowRecord))]
[JsonSerializable(typeof(AgentStatus))]
[JsonSerializable(typeof(List<FlowRecord>))]
[JsonSerializable(typeof(List<ConsumerInfo>))]
[JsonSerializable(typeof(ConsumerChange))]
[JsonSerializable(typeof(ConsumerInfo))]
public sealed partial class ApiJsonContext : JsonSerializerContext;
