using System.Net;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>A node and its InternalIP (where its agent's tunnel listens); null when it reports no IPv4 InternalIP.</summary>
internal sealed record ClusterNode(string Name, IPAddress? InternalIp)
{
    public string Key => Name;
}
