using System.Net;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// A pod as a container runtime makes one: an empty network namespace (<c>PREFIX-n&lt;i&gt;k&lt;j&gt;</c>, so the
/// topology's teardown removes it) that the CNI plug-ins wire up; its address is the one the IPAM plug-in handed out.
/// </summary>
internal sealed class CniPod(Topology topology, Node node, int index, string kubernetesNamespace, string podName, IPAddress ip)
    : NetnsHost(topology, $"n{node.Index}k{index}", $"{topology.Prefix}-n{node.Index}k{index}", ip)
{
    public Node Node { get; } = node;

    public string KubernetesNamespace { get; } = kubernetesNamespace;

    public string PodName { get; } = podName;

    /// <summary>Its workload name in the registry: name.namespace.</summary>
    public string WorkloadName => $"{PodName}.{KubernetesNamespace}";

    /// <summary>The sandbox's container id (CNI_CONTAINERID).</summary>
    public string ContainerId { get; } = $"{topology.Prefix}{node.Index}k{index}sandbox";
}
