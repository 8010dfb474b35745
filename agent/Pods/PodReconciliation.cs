using System.Net;
using System.Net.Sockets;
using NodeMesh.Contracts;
using NodeMesh.Discovery;

namespace NodeMesh.Pods;

/// <summary>What the start-up reconcile does: the pods to forget, and the pods to find a namespace for and capture.</summary>
/// <param name="Remove">Captured CNI pods the API server no longer places on this node (or that are another pod now).</param>
/// <param name="Adopt">Pods on this node that should be captured and are not: their namespace is looked for by address.</param>
internal sealed record PodReconcilePlan(IReadOnlyList<string> Remove, IReadOnlyList<PodFacts> Adopt);

/// <summary>
/// Reconciles this node's pods with the API server once its first listing is in: none left uncaptured (a pod that
/// started before the agent was installed, or whose ADD raced a restart), and none kept for pods that are gone (a DEL
/// that came while the agent was down while the namespace lived on). Decided here, done by the agent.
/// </summary>
internal static class PodReconciliation
{
    public static PodReconcilePlan Plan(IReadOnlyList<PodFacts> onThisNode, IReadOnlyCollection<WorkloadInfo> cniPods, IReadOnlySet<string> excludedNamespaces,
        Func<string, bool> isRegistered)
    {
        Dictionary<string, PodFacts> byName = onThisNode.ToDictionary(p => p.WorkloadName(), StringComparer.Ordinal);
        var remove = new List<string>();
        foreach (WorkloadInfo pod in cniPods)
        {
            if (!byName.TryGetValue(pod.Name, out PodFacts? facts) || pod.PodUid is not null && facts.Uid != pod.PodUid
                || excludedNamespaces.Contains(facts.Namespace))
            {
                remove.Add(pod.Name);
            }
        }

        List<PodFacts> adopt = [.. onThisNode
            .Where(p => !p.HostNetwork && !excludedNamespaces.Contains(p.Namespace) && p.Ips.Any(ip => ip.AddressFamily == AddressFamily.InterNetwork))
            .Where(p => !isRegistered(p.WorkloadName()))
            .OrderBy(p => p.WorkloadName(), StringComparer.Ordinal)];
        return new PodReconcilePlan(remove, adopt);
    }

    /// <summary>The pod an address found in a namespace belongs to, among those to adopt; null if none.</summary>
    public static PodFacts? Owner(IReadOnlyList<PodFacts> adopt, IEnumerable<IPAddress> addresses)
    {
        var found = addresses.ToHashSet();
        return adopt.FirstOrDefault(p => p.Ips.Any(found.Contains));
    }
}
