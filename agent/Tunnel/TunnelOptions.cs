using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Telemetry;

namespace NodeMesh.Tunnel;

/// <summary>
/// What every tunnel connection of an agent shares: its limits against the peer, keepalive, and where it
/// reports. One instance per agent (the per-identity quota is counted across all its connections).
/// </summary>
internal sealed record TunnelOptions
{
    /// <summary>Streams the listening side serves at once on one connection (counted until their handler ends).</summary>
    public int MaxAcceptedStreams { get; init; } = 4096;

    /// <summary>
    /// Bytes a peer may have in flight on one connection, across all its streams, before this side has delivered
    /// them onward: bounds what a peer can make the agent buffer (per-stream credit alone is 1 MiB × streams).
    /// </summary>
    public int ConnectionWindow { get; init; } = 32 * 1024 * 1024;

    /// <summary>A PING is sent when the peer has been silent this long.</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A peer silent this long is declared lost, and TCP gives up on unacknowledged data after it too
    /// (TCP_USER_TIMEOUT), so a dead peer is noticed even while a write is blocked.
    /// </summary>
    public TimeSpan KeepaliveTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Concurrent accepted streams per caller identity, over all of that identity's connections.</summary>
    public IdentityStreamQuota Quota { get; init; } = new(16_384);

    /// <summary>
    /// The address dialled connections leave from (the node's <c>node.address</c>): the receiving agent knows the
    /// sending node by it, so on a multi-homed host the kernel must not pick another. Null: the kernel chooses.
    /// </summary>
    public System.Net.IPAddress? LocalAddress { get; init; }

    public ILogger Logger { get; init; } = NullLogger.Instance;

    public MeshMetrics? Metrics { get; init; }

    public static TunnelOptions Default { get; } = new();
}
