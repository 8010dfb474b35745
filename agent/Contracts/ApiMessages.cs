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
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ApiRequest))]
[JsonSerializable(typeof(ApiResponse))]
[JsonSerializable(typeof(List<WorkloadInfo>))]
[JsonSerializable(typeof(FlowRecord))]
[JsonSerializable(typeof(AgentStatus))]
public sealed partial class ApiJsonContext : JsonSerializerContext;
