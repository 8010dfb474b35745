using System.Text.Json.Serialization;

namespace NodeMesh.Config;

/// <summary>Source-generated (AOT-safe) JSON for the configuration file. Unknown fields are errors.</summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    ReadCommentHandling = System.Text.Json.JsonCommentHandling.Skip,
    AllowTrailingCommas = true,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    WriteIndented = true)]
[JsonSerializable(typeof(AgentConfig))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;
