using System.Text.Json.Serialization;
using NodeMesh.Contracts;

namespace NodeMesh.Admin;

/// <summary>One certificate the agent holds (or is trying to get), for <c>/certificates</c>.</summary>
internal sealed record CertificateView
{
    public required string Identity { get; init; }

    /// <summary><c>valid</c>, <c>pending</c>, <c>unavailable</c> or <c>expired</c>.</summary>
    public required string State { get; init; }

    public string? Serial { get; init; }

    public string? Issuer { get; init; }

    public DateTimeOffset? NotBefore { get; init; }

    public DateTimeOffset? NotAfter { get; init; }

    public string? Error { get; init; }
}

/// <summary>One authorization policy in force, for <c>/policies</c>.</summary>
internal sealed record PolicyView
{
    public required string Name { get; init; }

    public required string Action { get; init; }

    public bool DryRun { get; init; }

    /// <summary>The workloads it applies to, as its selector says (labels, or every workload).</summary>
    public required string Selector { get; init; }

    public int Rules { get; init; }
}

/// <summary>The tunnels, for <c>/tunnels</c>: the listener with the connections peers opened, and this agent's to each peer.</summary>
internal sealed record TunnelsView
{
    public TunnelListenerStatus? Listener { get; init; }

    public IReadOnlyList<PeerStatus> Peers { get; init; } = [];
}

/// <summary>The readiness answer: ready, or what is missing.</summary>
internal sealed record ReadinessView
{
    public bool Ready { get; init; }

    public IReadOnlyList<string> Missing { get; init; } = [];
}

/// <summary>The answer to a <c>/logging</c> call.</summary>
internal sealed record LoggingView
{
    public required string Level { get; init; }
}

/// <summary>An admin request that could not be served: what was wrong with it.</summary>
internal sealed record AdminError
{
    public required string Error { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(AgentStatus))]
[JsonSerializable(typeof(IReadOnlyList<WorkloadInfo>))]
[JsonSerializable(typeof(IReadOnlyList<FlowRecord>))]
[JsonSerializable(typeof(IReadOnlyList<CertificateView>))]
[JsonSerializable(typeof(IReadOnlyList<PolicyView>))]
[JsonSerializable(typeof(ReadinessView))]
[JsonSerializable(typeof(TunnelsView))]
[JsonSerializable(typeof(LoggingView))]
[JsonSerializable(typeof(AdminError))]
[JsonSerializable(typeof(IReadOnlyList<ConsumerInfo>))]
[JsonSerializable(typeof(ConsumerView))]
internal sealed partial class AdminJsonContext : JsonSerializerContext;

/// <summary>A consumer after a change; <see cref="ApiKey"/> only when one was issued, and only in this answer.</summary>
internal sealed record ConsumerView
{
    public ConsumerInfo? Consumer { get; init; }

    public string? ApiKey { get; init; }
}
