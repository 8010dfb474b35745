using System.Net;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>The registry's entries as the cluster gives them (see <see cref="ClusterRegistryView.Build"/>).</summary>
internal sealed record ClusterRegistryEntries(
    IReadOnlyList<Workload> RemoteWorkloads,
    IReadOnlyDictionary<string, IPEndPoint> Peers,
    IReadOnlyList<MeshService> Services,
    IReadOnlyList<PodFacts> PodsOnThisNode,
    IReadOnlyList<string> Skipped);

/// <summary>
/// Decides what the registry holds from what the API server has (pure: no I/O, unit-tested):
/// <list type="bullet">
/// <item>a pod on another node that is Running with an IPv4 podIP, not hostNetwork, outside the excluded namespaces:
/// a remote workload <c>name.namespace</c>, identity <c>spiffe://TD/ns/NS/sa/SA</c>, on spec.nodeName;</item>
/// <item>every other node with an IPv4 InternalIP: a peer, its tunnel on that address and this agent's ports.tunnel;</item>
/// <item>a Service with cluster IPs: a mesh service, port → targetPort (a named one resolved through its
/// EndpointSlices' ports), its endpoints the workload names of the ready pods of its slices;</item>
/// <item>this node's pods are not remote (the agent captures them itself); they are listed for the pod directory.</item>
/// </list>
/// </summary>
internal static class ClusterRegistryView
{
    public static ClusterRegistryEntries Build(ClusterState state, string thisNode, string trustDomain, int tunnelPort, IReadOnlySet<string> excludedNamespaces)
    {
        var skipped = new List<string>();
        var workloads = new List<Workload>();
        var mine = new List<PodFacts>();
        foreach (ClusterPod pod in state.Pods.Values.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            PodFacts facts = pod.Facts;
            if (facts.Node == thisNode)
            {
                if (!pod.Finished)
                {
                    mine.Add(facts);
                }

                continue;
            }

            if (facts.Node is null || !pod.Running || facts.HostNetwork || excludedNamespaces.Contains(facts.Namespace))
            {
                continue;
            }

            IPAddress? ip = facts.Ips.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork);
            if (ip is null)
            {
                continue;
            }

            if (Identity(trustDomain, facts) is not { } identity)
            {
                skipped.Add($"pod {facts.Namespace}/{facts.Name}: service account '{SpiffeId.Printable(facts.ServiceAccount)}' makes no SPIFFE id");
                continue;
            }

            workloads.Add(new Workload(facts.WorkloadName(), ip, identity, facts.Node, Netns: null) { Labels = facts.Labels });
        }

        var peers = new Dictionary<string, IPEndPoint>(StringComparer.Ordinal);
        foreach (ClusterNode node in state.Nodes.Values)
        {
            if (node.Name != thisNode && node.InternalIp is { } address)
            {
                peers[node.Name] = new IPEndPoint(address, tunnelPort);
            }
        }

        ILookup<string, ClusterEndpointSlice> slices = state.EndpointSlices.Values.ToLookup(s => $"{s.Namespace}/{s.Service}", StringComparer.Ordinal);
        var services = new List<MeshService>();
        foreach (ClusterService service in state.Services.Values.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            if (service.ClusterIps.Count == 0)
            {
                continue; // headless ("None") or not allocated: clients dial the pods themselves.
            }

            List<ClusterEndpointSlice> own = [.. slices[service.Key].OrderBy(s => s.Name, StringComparer.Ordinal)];
            var ports = new List<ServicePort>();
            foreach (ClusterServicePort port in service.Ports)
            {
                int target = port.TargetPort != 0 ? port.TargetPort
                    : port.TargetPortName is null ? port.Port
                    : own.SelectMany(s => s.Ports).FirstOrDefault(p => p.Name == port.Name)?.Port ?? 0;
                if (target is > 0 and <= 65535)
                {
                    ports.Add(new ServicePort(port.Port, target));
                }
                else
                {
                    skipped.Add($"service {service.Key}: port {port.Port} targets '{port.TargetPortName}', which no endpoint slice resolves yet");
                }
            }

            List<string> endpoints = [.. own.SelectMany(s => s.Endpoints)
                .Where(e => e.Ready && e.Pod is not null)
                .Select(e => PodFacts.WorkloadName(e.PodNamespace ?? service.Namespace, e.Pod!))
                .Distinct(StringComparer.Ordinal)
                .Order(StringComparer.Ordinal)];
            if (ports.Count > 0)
            {
                services.Add(new MeshService(service.RegistryName, service.ClusterIps, ports, endpoints));
            }
        }

        return new ClusterRegistryEntries(workloads, peers, services, mine, skipped);
    }

    /// <summary>
    /// Whether the cluster places a pod running as <paramref name="identity"/> on <paramref name="node"/> (pending
    /// ones too: a pod is given its certificate while its network is set up, before it has an address).
    /// </summary>
    public static bool Places(ClusterState state, string trustDomain, IReadOnlySet<string> excludedNamespaces, string node, SpiffeId identity) =>
        identity.TrustDomain == trustDomain && !excludedNamespaces.Contains(identity.Namespace)
        && state.Pods.Values.Any(p => p.Facts is { HostNetwork: false } facts && !p.Finished && facts.Node == node
            && facts.Namespace == identity.Namespace && facts.ServiceAccount == identity.ServiceAccount);

    public static SpiffeId? Identity(string trustDomain, PodFacts pod) =>
        SpiffeId.TryParse($"spiffe://{trustDomain}/ns/{pod.Namespace}/sa/{pod.ServiceAccount}", out SpiffeId? id, out _) ? id : null;
}
