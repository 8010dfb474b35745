using System.Net;
using System.Net.Sockets;
using NodeMesh.Contracts;
using NodeMesh.Discovery;
using NodeMesh.State;

namespace NodeMesh.Pods;

/// <summary>What to do with a pod the CNI shim reports (decided from a snapshot; the agent does it).</summary>
internal abstract record PodDecision
{
    /// <summary>
    /// Capture it as <paramref name="Workload"/>, first removing <paramref name="Replaces"/>: the pod's previous sandbox,
    /// or a pod gone without a DEL reaching the agent whose address the network plug-in has handed out again.
    /// </summary>
    public sealed record Capture(WorkloadInfo Workload, IReadOnlyList<string> Replaces) : PodDecision;

    /// <summary>This very attachment is captured already (a runtime repeating its ADD).</summary>
    public sealed record AlreadyCaptured(string Name) : PodDecision;

    public sealed record Refuse(string Reason) : PodDecision;
}

/// <summary>
/// Whether a pod from the CNI shim may be captured, and as what. Nothing the shim sends is trusted: every field is
/// checked again here. Where the cluster is known (the kubernetes source) the API server has the last word on the
/// pod's service account, labels and node: the CA then issues the identity only to the node the pod is placed on.
/// </summary>
internal static class PodAdmission
{
    /// <summary>The annotation that sets what a pod accepts from outside the mesh (STRICT or PERMISSIVE).</summary>
    public const string ModeAnnotation = "nodemesh.io/mode";

    private const int MaxPathLength = 4096;

    /// <summary>The errors in what the shim sent, each naming its field; empty when the pod is well formed.</summary>
    public static List<string> Errors(PodInfo pod)
    {
        var errors = new List<string>();
        if (!KubernetesNames.IsLabel(pod.Namespace))
        {
            errors.Add($"pod.namespace: '{Printable.Of(pod.Namespace)}' is not a Kubernetes namespace name (1-63 of a-z, 0-9, '-')");
        }

        if (!KubernetesNames.IsSubdomain(pod.Name))
        {
            errors.Add($"pod.name: '{Printable.Of(pod.Name)}' is not a Kubernetes pod name (up to 253 of a-z, 0-9, '-', '.')");
        }

        if (pod.Uid is not null && !KubernetesNames.IsUid(pod.Uid))
        {
            errors.Add($"pod.uid: '{Printable.Of(pod.Uid)}' is not a Kubernetes uid");
        }

        if (pod.ServiceAccount is not null && !KubernetesNames.IsSubdomain(pod.ServiceAccount))
        {
            errors.Add($"pod.serviceAccount: '{Printable.Of(pod.ServiceAccount)}' is not a service account name");
        }

        if (!CniNames.IsContainerId(pod.ContainerId))
        {
            errors.Add($"pod.containerId: '{Printable.Of(pod.ContainerId)}' is not a container id (1-255 of letters, digits, '_', '.', '-')");
        }

        if (pod.Interface is not null && !CniNames.IsInterfaceName(pod.Interface))
        {
            errors.Add($"pod.interface: '{Printable.Of(pod.Interface)}' is not an interface name");
        }

        if (pod.Netns is not { Length: > 1 and <= MaxPathLength } netns || netns[0] != '/' || netns.Any(char.IsControl))
        {
            errors.Add($"pod.netns: '{Printable.Of(pod.Netns ?? "")}' is not an absolute path");
        }

        if (pod.Ips is not { Count: > 0 } ips)
        {
            errors.Add("pod.ips: none (the network plug-in before this one gave the pod no address)");
        }
        else if (ips.FirstOrDefault(ip => !IPAddress.TryParse(ip, out _) || ip.Contains('/', StringComparison.Ordinal)) is { } bad)
        {
            errors.Add($"pod.ips: '{Printable.Of(bad)}' is not an IP address");
        }
        else if (!ips.Select(IPAddress.Parse).Any(ip => ip.AddressFamily == AddressFamily.InterNetwork))
        {
            errors.Add("pod.ips: no IPv4 address (the mesh carries a pod by its IPv4 address)");
        }

        return errors;
    }

    /// <param name="facts">The API server's view of the pod; null when the directory does not list it.</param>
    /// <param name="pods">The pods the shim registered before, as stored.</param>
    public static PodDecision Decide(PodInfo pod, IPodDirectory directory, PodFacts? facts, string trustDomain, string node,
        IReadOnlyCollection<WorkloadInfo> pods, RegistrySnapshot current)
    {
        if (Errors(pod) is { Count: > 0 } errors)
        {
            return new PodDecision.Refuse(string.Join("; ", errors));
        }

        string workloadName = PodFacts.WorkloadName(pod.Namespace, pod.Name);
        string? serviceAccount = pod.ServiceAccount;
        IReadOnlyDictionary<string, string> labels = new Dictionary<string, string>();
        string? mode = null;
        if (directory.KnowsPods)
        {
            if (facts is null)
            {
                return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name} is not listed by the API server (yet); its identity is unknown");
            }

            if (facts.Node != node)
            {
                return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name} is placed on node '{Printable.Of(facts.Node ?? "none")}' by the API server, not on this node ({node})");
            }

            if (pod.Uid is not null && facts.Uid != pod.Uid)
            {
                return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name}: uid {pod.Uid} from the runtime, {Printable.Of(facts.Uid)} from the API server (another pod of that name)");
            }

            if (serviceAccount is not null && serviceAccount != facts.ServiceAccount)
            {
                return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name}: service account '{serviceAccount}' from the runtime, '{Printable.Of(facts.ServiceAccount)}' from the API server");
            }

            serviceAccount = facts.ServiceAccount;
            labels = facts.Labels;
            if (facts.Annotations.TryGetValue(ModeAnnotation, out string? annotated))
            {
                mode = annotated;
            }
        }

        serviceAccount ??= "default";
        string identity = $"spiffe://{trustDomain}/ns/{pod.Namespace}/sa/{serviceAccount}";
        List<string> invalid = [.. Config.ConfigLoader.WorkloadPolicyErrors(mode, labels)];
        if (invalid.Count > 0)
        {
            return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name}: " + string.Join("; ", invalid.Select(e => e.StartsWith("mode:", StringComparison.Ordinal)
                ? $"annotation {ModeAnnotation}" + e["mode".Length..] : e)));
        }

        string ip = pod.Ips!.Select(IPAddress.Parse).First(a => a.AddressFamily == AddressFamily.InterNetwork).ToString();
        WorkloadInfo? same = pods.FirstOrDefault(p => p.Name == workloadName);
        if (same is not null && same.ContainerId == pod.ContainerId)
        {
            return new PodDecision.AlreadyCaptured(workloadName);
        }

        if (same is null && current.FindByName(workloadName) is { } taken)
        {
            return new PodDecision.Refuse($"a workload named '{workloadName}' is already registered ({(taken.IsLocal ? "on this node, not by the CNI shim" : $"on node {taken.Node}")})");
        }

        var replaces = new List<string>();
        if (same is not null)
        {
            replaces.Add(same.Name);
        }

        if (current.FindByIp(IPAddress.Parse(ip)) is { } holder && holder.Name != workloadName)
        {
            // An address handed out again after a pod whose DEL never reached the agent: the new pod has it now.
            if (!holder.IsLocal || !pods.Any(p => p.Name == holder.Name))
            {
                return new PodDecision.Refuse($"ip: {ip} already belongs to workload '{holder.Name}'");
            }

            replaces.Add(holder.Name);
        }

        var workload = new WorkloadInfo
        {
            Name = workloadName,
            Ip = ip,
            Identity = identity,
            Netns = pod.Netns!,
            Mode = mode,
            Labels = labels,
            Source = "cni",
            ContainerId = pod.ContainerId,
            PodUid = facts?.Uid ?? pod.Uid,
        };
        if (Config.ConfigLoader.WorkloadErrors(workload.Name, workload.Ip, workload.Identity, workload.Netns, trustDomain).ToList() is { Count: > 0 } more)
        {
            return new PodDecision.Refuse($"pod {pod.Namespace}/{pod.Name}: " + string.Join("; ", more));
        }

        return new PodDecision.Capture(workload, replaces);
    }
}
