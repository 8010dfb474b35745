using System.Text.Json.Serialization;

namespace NodeMesh.Contracts;

/// <summary>A request on the agent's local Unix socket: one JSON object per connection, then one response.</summary>
public sealed record ApiRequest
{
    /// <summary>"workload-add", "workload-remove", "workload-list", "flows" or "status".</summary>
    public string Command { get; init; } = "";
    public WorkloadInfo? Workload { get; init; }
    public string? Name { get; init; }
}

public sealed record ApiResponse
{
    public bool Ok { get; init; }
    public string? Error { get; init; }
    public IReadOnlyList<WorkloadInfo>? Workloads { get; init; }
    public IReadOnlyList<FlowRecord>? Flows { get; init; }
    public AgentStatus? Status { get; init; }
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
}

/// <summary>One identity's certificate as the agent holds it.</summary>
public sealed record CertificateInfo
{
    public string Identity { get; init; } = "";

    /// <summary>When the certificate being served expires; null if there is none.</summary>
    public DateTimeOffset? NotAfter { get; init; }

    /// <summary>Why the last attempt to get one failed; null after a success.</summary>
    public string? Error { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, AllowDuplicateProperties = false)]
[JsonSerializable(typeof(ApiRequest))]
[JsonSerializable(typeof(ApiResponse))]
[JsonSerializable(typeof(List<WorkloadInfo>))]
[JsonSerializable(typeof(FlowRecord))]
[JsonSerializable(typeof(AgentStatus))]
public sealed partial class ApiJsonContext : JsonSerializerContext;
