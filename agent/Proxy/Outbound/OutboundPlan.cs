using System.Net;
using NodeMesh.State;

namespace NodeMesh.Proxy.Outbound;

/// <summary>
/// What to do with one captured outbound connection, decided from a registry snapshot alone (no I/O), so
/// every branch is unit-tested. A mesh destination is never sent in plaintext: if its node is unknown the
/// flow is refused.
/// </summary>
internal abstract record OutboundPlan
{
    /// <summary>A mesh workload on another node: through a tunnel to that node's agent.</summary>
    public sealed record ViaTunnel(Workload Source, Workload Destination, IPEndPoint PeerAgent) : OutboundPlan;

    /// <summary>A mesh workload on this node: delivered directly into its namespace.</summary>
    public sealed record Local(Workload Source, Workload Destination) : OutboundPlan;

    /// <summary>Not a mesh workload: connected unchanged from inside the source's namespace.</summary>
    public sealed record Passthrough(Workload Source) : OutboundPlan;

    public sealed record Refuse(string Reason) : OutboundPlan;

    public static OutboundPlan Decide(RegistrySnapshot registry, Workload source, IPEndPoint originalDestination, string thisNode)
    {
        Workload? destination = registry.FindByIp(originalDestination.Address);
        if (destination is null)
        {
            return new Passthrough(source);
        }

        if (destination.Node == thisNode)
        {
            return destination.IsLocal
                ? new Local(source, destination)
                : new Refuse($"{destination.Name} is registered on this node without a namespace");
        }

        if (!registry.PeerNodes.TryGetValue(destination.Node, out IPEndPoint? peer))
        {
            return new Refuse($"{destination.Name} lives on node {destination.Node}, whose agent address is unknown");
        }

        return new ViaTunnel(source, destination, peer);
    }
}
