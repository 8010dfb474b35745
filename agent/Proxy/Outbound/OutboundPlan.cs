using System.Net;
using NodeMesh.Config;
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

    /// <summary>A service's virtual address: one of <paramref name="Endpoints"/> (registered workloads) on <paramref name="TargetPort"/>.</summary>
    public sealed record ViaService(Workload Source, MeshService Service, int TargetPort, IReadOnlyList<Workload> Endpoints) : OutboundPlan;

    /// <summary>An address of the mesh (mesh.cidrs) the registry does not know (yet): held for the registry, then refused.</summary>
    public sealed record Unknown(Workload Source, IPNetwork Range) : OutboundPlan;

    public static OutboundPlan Decide(RegistrySnapshot registry, Workload source, IPEndPoint originalDestination, string thisNode) =>
        Decide(registry, source, originalDestination, thisNode, AgentEndpoints.None, acceptedOn: null);

    /// <param name="agent">The agent's own ports and addresses: a flow to one of them is refused.</param>
    /// <param name="acceptedOn">The local endpoint of the accepted socket (the listener the workload reached).</param>
    /// <param name="meshCidrs">mesh.cidrs: an unknown destination in them is not passed through.</param>
    public static OutboundPlan Decide(RegistrySnapshot registry, Workload source, IPEndPoint originalDestination, string thisNode, AgentEndpoints agent,
        IPEndPoint? acceptedOn, IReadOnlyList<IPNetwork>? meshCidrs = null)
    {
        if (IsSelf(registry, source, originalDestination, agent, acceptedOn) is { } loop)
        {
            return new Refuse(loop);
        }

        if (registry.FindService(originalDestination.Address) is { } service)
        {
            if (service.Ports.FirstOrDefault(p => p.Port == originalDestination.Port) is not { Port: > 0 } port)
            {
                return new Refuse($"service {service.Name} has no port {originalDestination.Port}");
            }

            List<Workload> endpoints = [.. service.Endpoints.Select(registry.FindByName).OfType<Workload>()];
            return endpoints.Count > 0
                ? new ViaService(source, service, port.TargetPort, endpoints)
                : new Refuse($"service {service.Name} has no endpoint in the registry ({(service.Endpoints.Count == 0 ? "none listed" : string.Join(", ", service.Endpoints))})");
        }

        return ForWorkload(registry, source, originalDestination, thisNode, meshCidrs);
    }

    /// <summary>The plan for a destination that is not a service: a workload (local or remote), unknown, or outside the mesh.</summary>
    public static OutboundPlan ForWorkload(RegistrySnapshot registry, Workload source, IPEndPoint originalDestination, string thisNode, IReadOnlyList<IPNetwork>? meshCidrs)
    {
        Workload? destination = registry.FindByIp(originalDestination.Address);
        if (destination is null)
        {
            IPAddress address = originalDestination.Address.IsIPv4MappedToIPv6 ? originalDestination.Address.MapToIPv4() : originalDestination.Address;
            foreach (IPNetwork range in meshCidrs ?? [])
            {
                if (range.Contains(address))
                {
                    return new Unknown(source, range);
                }
            }

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

    /// <summary>
    /// Why a destination would bring the flow back to an agent (the one that accepted it or another), or null.
    /// Connecting to it would be captured or accepted again, in a chain, until ports and fds run out: loopback and
    /// unspecified addresses (reached only by connecting there directly, never through capture), the listener's
    /// own endpoint, and an agent port on any address of the mesh (this node, its peers, a workload).
    /// </summary>
    internal static string? IsSelf(RegistrySnapshot registry, Workload source, IPEndPoint destination, AgentEndpoints agent, IPEndPoint? acceptedOn)
    {
        IPAddress address = destination.Address.IsIPv4MappedToIPv6 ? destination.Address.MapToIPv4() : destination.Address;
        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return $"{destination} is on this host's loopback; a captured connection there would reach the agent again";
        }

        if (acceptedOn is not null && Normalize(acceptedOn).Equals(new IPEndPoint(address, destination.Port)))
        {
            return $"{destination} is the agent's own listener";
        }

        if (agent.Ports.Contains(destination.Port)
            && (agent.Addresses.Contains(address) || address.Equals(source.Ip) || registry.FindByIp(address) is not null
                || registry.PeerNodes.Values.Any(peer => peer.Address.Equals(address))))
        {
            return $"{destination} is an agent port ({destination.Port}) of a mesh address, not a service";
        }

        return null;
    }

    private static IPEndPoint Normalize(IPEndPoint endPoint) =>
        endPoint.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port) : endPoint;
}

/// <summary>The ports the agent listens on and the addresses it owns, as the outbound plan needs them.</summary>
internal sealed record AgentEndpoints(IReadOnlySet<int> Ports, IReadOnlySet<IPAddress> Addresses)
{
    public static readonly AgentEndpoints None = new(new HashSet<int>(), new HashSet<IPAddress>());

    /// <summary>Outbound, inbound plaintext and tunnel ports, the CA service's (role server); this node's address and the CA's.</summary>
    public static AgentEndpoints From(AgentConfig config)
    {
        var ports = new HashSet<int> { config.Ports.Outbound, config.Ports.InboundPlaintext, config.Ports.Tunnel };
        var addresses = new HashSet<IPAddress>();
        if (IPAddress.TryParse(config.Node.Address, out IPAddress? node))
        {
            addresses.Add(node);
        }

        if (config.Ca.Role == "server" && IPEndPoint.TryParse(config.Ca.Listen, out IPEndPoint? ca))
        {
            ports.Add(ca.Port);
            addresses.Add(ca.Address);
        }

        return new AgentEndpoints(ports, addresses);
    }
}
