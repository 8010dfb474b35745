using System.Net;

namespace NodeMesh.Discovery;

/// <summary>
/// What the cluster says about pods (the <c>kubernetes</c> source): the facts the CNI shim cannot know, such as a
/// pod's service account and labels, and which pods the API server places on this node, for the reconcile at start.
/// Sources that know no pods (static, etcd) answer with <see cref="NoPodDirectory"/>.
/// </summary>
internal interface IPodDirectory
{
    /// <summary>Whether this directory knows pods at all (false: every answer is empty).</summary>
    bool KnowsPods { get; }

    /// <summary>
    /// The pod as the API server has it, waiting up to <paramref name="timeout"/> for it to appear (the kubelet
    /// runs the CNI ADD moments after the pod is bound, so the watch may not have delivered it yet); null if not.
    /// </summary>
    Task<PodFacts?> FindAsync(string @namespace, string name, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>The pods the API server places on this node, once the first listing is in (null before that).</summary>
    IReadOnlyList<PodFacts>? PodsOnThisNode();
}

/// <summary>A pod as the API server describes it.</summary>
/// <param name="HostNetwork">A pod in the node's own namespace: never captured.</param>
internal sealed record PodFacts(
    string Namespace,
    string Name,
    string Uid,
    string ServiceAccount,
    string? Node,
    IReadOnlyList<IPAddress> Ips,
    IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Annotations,
    bool HostNetwork)
{
    /// <summary>The workload name a pod has in the registry: <c>name.namespace</c>, as in its DNS name.</summary>
    public static string WorkloadName(string @namespace, string name) => $"{name}.{@namespace}";

    public string WorkloadName() => WorkloadName(Namespace, Name);
}

/// <summary>The directory of a source that knows no pods.</summary>
internal sealed class NoPodDirectory : IPodDirectory
{
    public static readonly NoPodDirectory Instance = new();

    public bool KnowsPods => false;

    public Task<PodFacts?> FindAsync(string @namespace, string name, TimeSpan timeout, CancellationToken cancellationToken) => Task.FromResult<PodFacts?>(null);

    public IReadOnlyList<PodFacts>? PodsOnThisNode() => null;
}
