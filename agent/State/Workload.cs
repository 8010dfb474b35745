using System.Net;
using NodeMesh.Authz;
using NodeMesh.Identity;

namespace NodeMesh.State;

/// <summary>A mesh workload: an address, the identity it runs as, and the node it lives on.</summary>
/// <param name="Netns">The network namespace path, for workloads on this node; null for remote ones.</param>
internal sealed record Workload(string Name, IPAddress Ip, SpiffeId Identity, string Node, string? Netns) : IAuthzSubject
{
    private static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>();

    public bool IsLocal => Netns is not null;

    /// <summary>Labels policies select on (local workloads).</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = NoLabels;

    /// <summary>Whether plaintext from outside the mesh is accepted (PERMISSIVE) or refused (STRICT).</summary>
    public PeerMode Mode { get; init; } = PeerMode.Permissive;

    public bool AcceptsPlaintext => Mode == PeerMode.Permissive;
}

/// <summary>What a workload accepts from callers outside the mesh.</summary>
internal enum PeerMode
{
    /// <summary>Mesh traffic and plaintext from outside the mesh (authorized as unauthenticated callers).</summary>
    Permissive,

    /// <summary>Only mesh traffic with a valid identity; plaintext is refused.</summary>
    Strict,
}
