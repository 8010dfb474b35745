using System.Diagnostics.CodeAnalysis;
using NodeMesh.Identity;

namespace NodeMesh.Discovery;

internal enum RegistryKeyKind
{
    Node,
    Workload,
    Service,
}

/// <summary>
/// Where an entry lives in the store, under the mesh's prefix: <c>nodes/NODE/node</c>,
/// <c>nodes/NODE/workloads/NAME</c> and <c>services/NAME</c>. A node writes only under <c>nodes/NODE/</c>,
/// which is what the store's access rules grant it, so one node cannot publish another's workloads.
/// </summary>
internal readonly record struct RegistryKey(RegistryKeyKind Kind, string? Node, string Name)
{
    public static string NodePrefix(string prefix, string node) => $"{prefix}nodes/{node}/";

    public static string ForNode(string prefix, string node) => $"{NodePrefix(prefix, node)}node";

    public static string ForWorkload(string prefix, string node, string name) => $"{NodePrefix(prefix, node)}workloads/{name}";

    public static string ForService(string prefix, string name) => $"{prefix}services/{name}";

    /// <summary>Where the gateway's API consumers live (<c>consumers/NAME</c>): in the store beside the registry, but no part of it.</summary>
    public static string ConsumersPrefix(string prefix) => $"{prefix}consumers/";

    /// <summary>A key under the prefix that another reader owns (the consumers): the registry neither reads nor refuses it.</summary>
    public static bool IsNotRegistry(string prefix, string key) => key.StartsWith(ConsumersPrefix(prefix), StringComparison.Ordinal);

    /// <summary>Reads a key of the store; anything else under the prefix is refused with what is wrong.</summary>
    public static bool TryParse(string prefix, string key, out RegistryKey parsed, [NotNullWhen(false)] out string? error)
    {
        parsed = default;
        if (!key.StartsWith(prefix, StringComparison.Ordinal))
        {
            error = $"key '{SpiffeId.Printable(key)}' is not under {prefix}";
            return false;
        }

        string[] parts = key[prefix.Length..].Split('/');
        (bool ok, parsed) = parts switch
        {
            ["nodes", string node, "node"] when MeshIdentities.IsNodeName(node) => (true, new RegistryKey(RegistryKeyKind.Node, node, node)),
            ["nodes", string node, "workloads", string name] when MeshIdentities.IsNodeName(node) && MeshIdentities.IsNodeName(name) =>
                (true, new RegistryKey(RegistryKeyKind.Workload, node, name)),
            ["services", string name] when MeshIdentities.IsNodeName(name) => (true, new RegistryKey(RegistryKeyKind.Service, null, name)),
            _ => (false, default),
        };
        error = ok ? null : $"key '{SpiffeId.Printable(key)}' is not nodes/NODE/node, nodes/NODE/workloads/NAME or services/NAME under {prefix} (names: 1-63 of a-z, 0-9, '-', '.')";
        return ok;
    }
}
