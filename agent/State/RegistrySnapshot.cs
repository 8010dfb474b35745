using System.Collections.Frozen;
using System.Net;
using NodeMesh.Authz;

namespace NodeMesh.State;

/// <summary>
/// An immutable view of every workload and peer node the agent knows, and of the authorization policies in
/// force. Readers take one snapshot and decide with it (a flow's destination and the policies that judge it
/// always come from the same configuration); a change builds a new snapshot that is swapped in atomically.
/// </summary>
internal sealed class RegistrySnapshot
{
    public static readonly RegistrySnapshot Empty = new([], new Dictionary<string, IPEndPoint>());

    private readonly FrozenDictionary<IPAddress, Workload> _byIp;
    private readonly FrozenDictionary<string, Workload> _byName;
    private readonly FrozenDictionary<IPAddress, MeshService> _services;

    /// <param name="services">Services by their virtual addresses; an address claimed by a workload or an earlier service is left out.</param>
    public RegistrySnapshot(IEnumerable<Workload> workloads, IReadOnlyDictionary<string, IPEndPoint> peerNodes, PolicySet? policies = null,
        IEnumerable<MeshService>? services = null)
    {
        _byIp = workloads.ToFrozenDictionary(w => w.Ip);
        _byName = _byIp.Values.DistinctBy(w => w.Name, StringComparer.Ordinal).ToFrozenDictionary(w => w.Name, StringComparer.Ordinal);
        var byAddress = new Dictionary<IPAddress, MeshService>();
        foreach (MeshService service in services ?? [])
        {
            foreach (IPAddress address in service.Addresses.Where(a => !_byIp.ContainsKey(a)))
            {
                byAddress.TryAdd(address, service);
            }
        }

        _services = byAddress.ToFrozenDictionary();
        PeerNodes = peerNodes.ToFrozenDictionary(StringComparer.Ordinal);
        Policies = policies ?? PolicySet.Empty;
    }

    /// <summary>Every service with at least one address in force.</summary>
    public IEnumerable<MeshService> Services => _services.Values.Distinct();

    public MeshService? FindService(IPAddress address) => _services.GetValueOrDefault(address);

    public Workload? FindByName(string name) => _byName.GetValueOrDefault(name);

    public IReadOnlyDictionary<string, IPEndPoint> PeerNodes { get; }

    /// <summary>The authorization policies in force with these workloads.</summary>
    public PolicySet Policies { get; }

    public IEnumerable<Workload> Workloads => _byIp.Values;

    public Workload? FindByIp(IPAddress ip) => _byIp.GetValueOrDefault(ip);

    public RegistrySnapshot With(Workload workload) =>
        new(_byIp.Values.Where(w => w.Name != workload.Name && !w.Ip.Equals(workload.Ip)).Append(workload), PeerNodes, Policies, Services);

    public RegistrySnapshot Without(string name) => new(_byIp.Values.Where(w => w.Name != name), PeerNodes, Policies, Services);

    /// <summary>
    /// This snapshot with <paramref name="updated"/> replacing the registered workloads of the same name and address
    /// (others are ignored) and <paramref name="policies"/> in force: a reload, as one change.
    /// </summary>
    public RegistrySnapshot Reconfigured(IEnumerable<Workload> updated, PolicySet policies)
    {
        Dictionary<IPAddress, Workload> workloads = _byIp.ToDictionary();
        foreach (Workload workload in updated)
        {
            if (workloads.TryGetValue(workload.Ip, out Workload? existing) && existing.Name == workload.Name)
            {
                workloads[workload.Ip] = workload;
            }
        }

        return new(workloads.Values, PeerNodes, policies, Services);
    }
}
