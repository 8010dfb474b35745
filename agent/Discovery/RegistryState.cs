using System.Collections.Immutable;
using System.Net;
using System.Text.Json;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Discovery;

/// <summary>
/// The registry as the store holds it, folded from a listing and the changes after it: every accepted entry by
/// key, and the store revision it reflects. Pure (no I/O) and immutable: each change gives a new state, so the
/// source can swap it in at once and a test can replay a store's history. A malformed entry is refused with
/// its reason and leaves the state as it was; it never removes a good entry of another key.
/// </summary>
internal sealed class RegistryState
{
    private readonly ImmutableSortedDictionary<string, object> _entries;

    private RegistryState(string prefix, string trustDomain, ImmutableSortedDictionary<string, object> entries, long revision)
    {
        Prefix = prefix;
        TrustDomain = trustDomain;
        _entries = entries;
        Revision = revision;
    }

    public static RegistryState Empty(string prefix, string trustDomain) =>
        new(prefix, trustDomain, ImmutableSortedDictionary.Create<string, object>(StringComparer.Ordinal), 0);

    public string Prefix { get; }

    public string TrustDomain { get; }

    /// <summary>The store revision this state reflects (0 before the first listing).</summary>
    public long Revision { get; }

    public int Count => _entries.Count;

    public IEnumerable<MeshNode> Nodes => _entries.Values.OfType<MeshNode>();

    public IEnumerable<Workload> Workloads => _entries.Values.OfType<Workload>();

    public IEnumerable<MeshService> Services => _entries.Values.OfType<MeshService>();

    /// <summary>A listing of the whole prefix at <paramref name="revision"/>; refused entries are left out and described in <paramref name="refused"/>.</summary>
    public RegistryState Listed(IEnumerable<KeyValuePair<string, ReadOnlyMemory<byte>>> entries, long revision, List<string> refused)
    {
        ImmutableSortedDictionary<string, object>.Builder builder = ImmutableSortedDictionary.CreateBuilder<string, object>(StringComparer.Ordinal);
        foreach ((string key, ReadOnlyMemory<byte> value) in entries)
        {
            if (RegistryKey.IsNotRegistry(Prefix, key))
            {
                continue;
            }

            if (TryRead(key, value.Span, out object? entry, out string? error))
            {
                builder[key] = entry;
            }
            else
            {
                refused.Add(error);
            }
        }

        return new(Prefix, TrustDomain, builder.ToImmutable(), revision);
    }

    /// <summary>A put at <paramref name="revision"/>; on a refusal the state keeps the key's previous entry (null <paramref name="error"/> when accepted).</summary>
    public RegistryState Put(string key, ReadOnlySpan<byte> value, long revision, out string? error)
    {
        error = null;
        if (RegistryKey.IsNotRegistry(Prefix, key))
        {
            return At(revision);
        }

        return TryRead(key, value, out object? entry, out error)
            ? new(Prefix, TrustDomain, _entries.SetItem(key, entry), Math.Max(Revision, revision))
            : new(Prefix, TrustDomain, _entries, Math.Max(Revision, revision));
    }

    /// <summary>The same entries, current at <paramref name="revision"/> (a progress notification: nothing changed up to it).</summary>
    public RegistryState At(long revision) => revision <= Revision ? this : new(Prefix, TrustDomain, _entries, revision);

    public RegistryState Delete(string key, long revision) => new(Prefix, TrustDomain, _entries.Remove(key), Math.Max(Revision, revision));

    /// <summary>Every entry of <paramref name="node"/> gone at once (its lease expired, or it was removed).</summary>
    public RegistryState WithoutNode(string node, long revision)
    {
        string nodePrefix = RegistryKey.NodePrefix(Prefix, node);
        return new(Prefix, TrustDomain, _entries.RemoveRange(_entries.Keys.Where(k => k.StartsWith(nodePrefix, StringComparison.Ordinal))), Math.Max(Revision, revision));
    }

    private bool TryRead(string key, ReadOnlySpan<byte> value, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out object? entry,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        entry = null;
        if (!RegistryKey.TryParse(Prefix, key, out RegistryKey parsed, out error))
        {
            return false;
        }

        try
        {
            error = parsed.Kind switch
            {
                RegistryKeyKind.Node => ReadNode(parsed, JsonSerializer.Deserialize(value, RegistryJsonContext.Default.NodeRecord), out entry),
                RegistryKeyKind.Workload => ReadWorkload(parsed, JsonSerializer.Deserialize(value, RegistryJsonContext.Default.WorkloadRecord), out entry),
                _ => ReadService(parsed, JsonSerializer.Deserialize(value, RegistryJsonContext.Default.ServiceRecord), out entry),
            };
        }
        catch (JsonException ex)
        {
            error = $"invalid JSON ({ex.Message.Split(" Path:")[0].TrimEnd('.')}{(ex.Path is { } path ? $" at {path}" : "")})";
        }

        if (error is not null)
        {
            error = $"{key}: {error}";
            entry = null;
            return false;
        }

        return entry is not null;
    }

    private static string? ReadNode(RegistryKey key, NodeRecord? record, out object? entry)
    {
        entry = null;
        if (record is null)
        {
            return "null instead of a node";
        }

        if (record.Name != key.Node)
        {
            return $"name '{SpiffeId.Printable(record.Name)}' is not the key's node {key.Node}";
        }

        if (!ConfigLoader.IsIPv4EndPoint(record.Address))
        {
            return $"address '{SpiffeId.Printable(record.Address)}' is not an IPv4 address:port";
        }

        entry = new MeshNode(record.Name, IPEndPoint.Parse(record.Address), record.Transports.Count == 0 ? ["tls"] : record.Transports);
        return null;
    }

    private string? ReadWorkload(RegistryKey key, WorkloadRecord? record, out object? entry)
    {
        entry = null;
        if (record is null)
        {
            return "null instead of a workload";
        }

        if (record.Name != key.Name || record.Node != key.Node)
        {
            return $"workload '{SpiffeId.Printable(record.Name)}' on node '{SpiffeId.Printable(record.Node)}' is not the key's {key.Name} on {key.Node}";
        }

        string? ipv4 = record.Ips.FirstOrDefault(ConfigLoader.IsIPv4);
        if (ipv4 is null)
        {
            return "ips: no IPv4 address";
        }

        if (!SpiffeId.TryParse(record.Identity, out SpiffeId? identity, out string? identityError))
        {
            return $"identity: {identityError}";
        }

        if (identity.TrustDomain != TrustDomain)
        {
            return $"identity: {identity} is not in trust domain {TrustDomain}";
        }

        if (!ConfigLoader.TryParseMode(record.Mode, out PeerMode mode))
        {
            return $"mode: '{SpiffeId.Printable(record.Mode)}' must be STRICT or PERMISSIVE";
        }

        entry = new Workload(record.Name, IPAddress.Parse(ipv4), identity, record.Node, Netns: null) { Labels = record.Labels, Mode = mode };
        return null;
    }

    private static string? ReadService(RegistryKey key, ServiceRecord? record, out object? entry)
    {
        entry = null;
        if (record is null)
        {
            return "null instead of a service";
        }

        if (record.Name != key.Name)
        {
            return $"name '{SpiffeId.Printable(record.Name)}' is not the key's {key.Name}";
        }

        if (record.Addresses.Count == 0)
        {
            return "addresses: none";
        }

        if (record.Addresses.FirstOrDefault(a => !ConfigLoader.IsIPv4(a)) is { } bad)
        {
            return $"addresses: '{SpiffeId.Printable(bad)}' is not an IPv4 address";
        }

        if (record.Ports.Count == 0 || record.Ports.Any(p => p.Port is < 1 or > 65535 || p.TargetPort is < 0 or > 65535))
        {
            return "ports: each needs a port of 1-65535 (targetPort 1-65535, or 0 for the same)";
        }

        if (record.Endpoints.FirstOrDefault(e => !MeshIdentities.IsNodeName(e)) is { } badEndpoint)
        {
            return $"endpoints: '{SpiffeId.Printable(badEndpoint)}' is not a workload name";
        }

        entry = new MeshService(record.Name, [.. record.Addresses.Select(IPAddress.Parse)],
            [.. record.Ports.Select(p => new ServicePort(p.Port, p.TargetPort == 0 ? p.Port : p.TargetPort))], record.Endpoints);
        return null;
    }
}
