using System.Text.Json.Serialization;

namespace NodeMesh.Config;

/// <summary>Source-generated (AOT-safe) JSON for the configuration file. Unknown and repeated fields are errors (a repeated one is ambiguous: which did the operator mean?).</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    AllowDuplicateProperties = false,
    WriteIndented = true,
    Converters = [typeof(DurationJsonConverter), typeof(ConfigEnumConverter<OtlpProtocol>), typeof(ConfigEnumConverter<LogFormat>), typeof(ConfigEnumConverter<DiscoverySource>), typeof(IPNetworkJsonConverter),
        typeof(ConfigEnumConverter<Microsoft.Extensions.Logging.LogLevel>), typeof(ConfigEnumConverter<Gateway.GatewayProtocol>), typeof(ConfigEnumConverter<Gateway.PathMatchType>),
        typeof(ConfigEnumConverter<Gateway.ValueMatchType>), typeof(ConfigEnumConverter<Gateway.HttpRouteFilterType>), typeof(ConfigEnumConverter<Gateway.PathModifierType>),
        typeof(ConfigEnumConverter<Gateway.LoadBalancerType>), typeof(ConfigEnumConverter<Gateway.BackendProtocol>),
        typeof(ConfigEnumConverter<Gateway.RateLimitAlgorithm>), typeof(ConfigEnumConverter<Gateway.RateLimitKey>)])]
[JsonSerializable(typeof(AgentConfig))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;
