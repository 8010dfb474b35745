using System.Text.Json.Serialization;

namespace NodeMesh.Discovery;

/// <summary>What a node publishes about itself under its own prefix: where its tunnel listens and how.</summary>
internal sealed record NodeRecord
{
    public string Name { get; init; } = "";

    /// <summary>The tunnel listener, IPv4 "address:port".</summary>
    public string Address { get; init; } = "";

    /// <summary>The tunnel transports it serves ("tls" always; "quic" where libmsquic works).</summary>
    public IReadOnlyList<string> Transports { get; init; } = [];
}

/// <summary>A workload as its node publishes it.</summary>
internal sealed record WorkloadRecord
{
    public string Name { get; init; } = "";

    public string Node { get; init; } = "";

    /// <summary>Its addresses; the first IPv4 one is its mesh address.</summary>
    public IReadOnlyList<string> Ips { get; init; } = [];

    public string Identity { get; init; } = "";

    /// <summary>"PERMISSIVE" or "STRICT".</summary>
    public string Mode { get; init; } = "PERMISSIVE";

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
}

/// <summary>A service: virtual addresses and ports, balanced over the workloads named as its endpoints.</summary>
internal sealed record ServiceRecord
{
    public string Name { get; init; } = "";

    public IReadOnlyList<string> Addresses { get; init; } = [];

    public IReadOnlyList<ServicePortRecord> Ports { get; init; } = [];

    /// <summary>Workload names.</summary>
    public IReadOnlyList<string> Endpoints { get; init; } = [];
}

internal sealed record ServicePortRecord
{
    public int Port { get; init; }

    /// <summary>The endpoints' port; the service port when 0.</summary>
    public int TargetPort { get; init; }
}

/// <summary>Source-generated JSON for the registry's values: strict, so a malformed entry is refused with its reason, never half read.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(NodeRecord))]
[JsonSerializable(typeof(WorkloadRecord))]
[JsonSerializable(typeof(ServiceRecord))]
internal sealed partial class RegistryJsonContext : JsonSerializerContext;
