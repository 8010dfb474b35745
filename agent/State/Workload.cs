using System.Net;
using NodeMesh.Identity;

namespace NodeMesh.State;

/// <summary>A mesh workload: an address, the identity it runs as, and the node it lives on.</summary>
/// <param name="Netns">The network namespace path, for workloads on this node; null for remote ones.</param>
internal sealed record Workload(string Name, IPAddress Ip, SpiffeId Identity, string Node, string? Netns)
{
    public bool IsLocal => Netns is not null;
}
