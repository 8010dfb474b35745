using System.Text.Json.Serialization;
using k8s.Models;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// Source-generated JSON for the four resources the source reads and the API's Status, over the client library's
/// models (their own converters, such as IntOrString's, are on the types). The library's SourceGenerationContext
/// covers every Kubernetes type, and using it cost the binary 17 MB; this one only the graphs read here.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(V1PodList))]
[JsonSerializable(typeof(V1ServiceList))]
[JsonSerializable(typeof(V1EndpointSliceList))]
[JsonSerializable(typeof(V1NodeList))]
[JsonSerializable(typeof(V1Status))]
internal sealed partial class KubernetesJsonContext : JsonSerializerContext;
