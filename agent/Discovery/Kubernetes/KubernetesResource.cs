using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>A resource the source lists and watches, cluster-wide: where it is served and what RBAC calls it.</summary>
/// <param name="Name">The RBAC resource name ("pods").</param>
/// <param name="ApiGroup">"" for the core group.</param>
/// <param name="Path">The collection's path, e.g. /api/v1/pods.</param>
internal abstract record KubernetesResource(string Name, string ApiGroup, string Path);

/// <summary>A resource of object type <typeparamref name="T"/> and list type <typeparamref name="TList"/>, read with the client library's source-generated JSON (AOT-safe).</summary>
internal sealed record KubernetesResource<T, TList>(string Name, string ApiGroup, string Path, JsonTypeInfo<T> ItemJson, JsonTypeInfo<TList> ListJson)
    : KubernetesResource(Name, ApiGroup, Path)
    where T : class, IKubernetesObject<V1ObjectMeta>
    where TList : class, IItems<T>, IMetadata<V1ListMeta>;

/// <summary>The four resources of the kubernetes source.</summary>
internal static class KubernetesResources
{
    public static readonly KubernetesResource<V1Pod, V1PodList> Pods =
        new("pods", "", "/api/v1/pods", KubernetesJsonContext.Default.V1Pod, KubernetesJsonContext.Default.V1PodList);

    public static readonly KubernetesResource<V1Service, V1ServiceList> Services =
        new("services", "", "/api/v1/services", KubernetesJsonContext.Default.V1Service, KubernetesJsonContext.Default.V1ServiceList);

    public static readonly KubernetesResource<V1EndpointSlice, V1EndpointSliceList> EndpointSlices =
        new("endpointslices", "discovery.k8s.io", "/apis/discovery.k8s.io/v1/endpointslices", KubernetesJsonContext.Default.V1EndpointSlice, KubernetesJsonContext.Default.V1EndpointSliceList);

    public static readonly KubernetesResource<V1Node, V1NodeList> Nodes =
        new("nodes", "", "/api/v1/nodes", KubernetesJsonContext.Default.V1Node, KubernetesJsonContext.Default.V1NodeList);
}
