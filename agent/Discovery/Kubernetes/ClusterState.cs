using System.Collections.Immutable;
using k8s.Models;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// What the API server has, as the four watches folded it (pure, immutable): each event gives a new state that
/// the source turns into the registry in one swap. Objects are kept as the little the registry needs of them.
/// </summary>
internal sealed record ClusterState
{
    public static readonly ClusterState Empty = new();

    public ImmutableDictionary<string, ClusterPod> Pods { get; init; } = ImmutableDictionary.Create<string, ClusterPod>(StringComparer.Ordinal);

    public ImmutableDictionary<string, ClusterService> Services { get; init; } = ImmutableDictionary.Create<string, ClusterService>(StringComparer.Ordinal);

    public ImmutableDictionary<string, ClusterEndpointSlice> EndpointSlices { get; init; } = ImmutableDictionary.Create<string, ClusterEndpointSlice>(StringComparer.Ordinal);

    public ImmutableDictionary<string, ClusterNode> Nodes { get; init; } = ImmutableDictionary.Create<string, ClusterNode>(StringComparer.Ordinal);

    public ClusterState With(ResourceEvent<V1Pod> e) => this with { Pods = Fold(Pods, e, KubernetesObjects.Pod, p => p.Key) };

    public ClusterState With(ResourceEvent<V1Service> e) => this with { Services = Fold(Services, e, KubernetesObjects.Service, s => s.Key) };

    public ClusterState With(ResourceEvent<V1EndpointSlice> e) => this with { EndpointSlices = Fold(EndpointSlices, e, KubernetesObjects.EndpointSlice, s => s.Key) };

    public ClusterState With(ResourceEvent<V1Node> e) => this with { Nodes = Fold(Nodes, e, KubernetesObjects.Node, n => n.Key) };

    /// <summary>A listing replaces the collection; a change sets or removes one object; a bookmark or failure changes nothing.</summary>
    private static ImmutableDictionary<string, TFact> Fold<T, TFact>(ImmutableDictionary<string, TFact> current, ResourceEvent<T> e, Func<T, TFact> read, Func<TFact, string> key)
        where T : class =>
        e.Kind switch
        {
            ResourceEventKind.Listed => current.Clear().SetItems((e.Items ?? []).Select(read).Select(f => KeyValuePair.Create(key(f), f))),
            ResourceEventKind.Added or ResourceEventKind.Modified when e.Object is { } changed && read(changed) is { } fact => current.SetItem(key(fact), fact),
            ResourceEventKind.Deleted when e.Object is not null => current.Remove(key(read(e.Object))),
            _ => current,
        };
}
