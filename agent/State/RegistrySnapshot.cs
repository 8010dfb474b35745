using System.Collections.Frozen;
using System.Net;

namespace NodeMesh.State;

/// <summary>
/// An immutable view of every workload and peer node the agent knows. Readers take one snapshot and decide
/// with it; a change builds a new snapshot that is swapped in atomically.
/// </summary>
internal sealed class RegistrySnapshot
{
    public static readonly RegistrySnapshot Empty = new([], new Dictionary<string, IPEndPoint>());

    private readonly FrozenDictionary<IPAddress, Workload> _byIp;

    public RegistrySnapshot(IEnumerable<Workload> workloads, IReadOnlyDictionary<string, IPEndPoint> peerNodes)
    {
        _byIp = workloads.ToFrozenDictionary(w => w.Ip);
        PeerNodes = peerNodes.ToFrozenDictionary(StringComparer.Ordinal);
    }

    public IReadOnlyDictionary<string, IPEndPoint> PeerNodes { get; }

    public IEnumerable<Workload> Workloads => _byIp.Values;

    public Workload? FindByIp(IPAddress ip) => _byIp.GetValueOrDefault(ip);

    public RegistrySnapshot With(Workload workload) =>
        new(_byIp.Values.Where(w => w.Name != workload.Name && !w.Ip.Equals(workload.Ip)).Append(workload), PeerNodes);

    public RegistrySnapshot Without(string name) => new(_byIp.Values.Where(w => w.Name != name), PeerNodes);
}
