using System.Diagnostics.CodeAnalysis;

namespace NodeMesh.Identity;

/// <summary>
/// The identities the mesh itself uses, all in the reserved namespace <c>nodemesh-system</c>: the CA service
/// (<c>sa/ca</c>) and each node that joined through it (<c>sa/node.&lt;node-name&gt;</c>). No workload may be
/// issued an identity in that namespace.
/// </summary>
internal static class MeshIdentities
{
    public const string Namespace = "nodemesh-system";
    public const string CaServiceAccount = "ca";
    public const string NodePrefix = "node.";

    /// <summary>The identity the CA service presents to agents: <c>spiffe://&lt;td&gt;/ns/nodemesh-system/sa/ca</c>.</summary>
    public static SpiffeId Ca(string trustDomain) => new(trustDomain, Namespace, CaServiceAccount);

    /// <summary>The identity of a node that joined the mesh CA: <c>spiffe://&lt;td&gt;/ns/nodemesh-system/sa/node.&lt;name&gt;</c>.</summary>
    public static SpiffeId Node(string trustDomain, string nodeName)
    {
        if (!IsNodeName(nodeName))
        {
            throw new ArgumentException($"'{SpiffeId.Printable(nodeName)}' is not a valid node name", nameof(nodeName));
        }

        return new SpiffeId(trustDomain, Namespace, NodePrefix + nodeName);
    }

    /// <summary>The node name in a node identity, or false when <paramref name="identity"/> is not one.</summary>
    public static bool TryGetNodeName(SpiffeId identity, [NotNullWhen(true)] out string? nodeName)
    {
        nodeName = null;
        if (identity.Namespace != Namespace || !identity.ServiceAccount.StartsWith(NodePrefix, StringComparison.Ordinal))
        {
            return false;
        }

        string name = identity.ServiceAccount[NodePrefix.Length..];
        if (!IsNodeName(name))
        {
            return false;
        }

        nodeName = name;
        return true;
    }

    /// <summary>A node name: 1-63 characters of a-z, 0-9, '-', '.', starting and ending with a letter or digit.</summary>
    public static bool IsNodeName([NotNullWhen(true)] string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 63)
        {
            return false;
        }

        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            bool alnum = char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c);
            if (!alnum && !(c is '-' or '.' && i > 0 && i < value.Length - 1))
            {
                return false;
            }
        }

        return true;
    }
}
