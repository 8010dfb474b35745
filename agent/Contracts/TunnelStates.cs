namespace NodeMesh.Contracts;

/// <summary>
/// The pool's tunnel connections to one peer node under one source identity, as they are now (for
/// <c>nodemesh status</c> and the admin API).
/// </summary>
public sealed record TunnelPeerState
{
    public string Node { get; init; } = "";
    public string SourceIdentity { get; init; } = "";

    /// <summary>Connections open and taking flows.</summary>
    public int Connections { get; init; }

    /// <summary>Flows the connections carry now.</summary>
    public int Streams { get; init; }

    /// <summary>A connection is being dialled.</summary>
    public bool Dialling { get; init; }

    /// <summary>Why the last dial failed; null after a success.</summary>
    public string? LastError { get; init; }

    /// <summary>While the peer is in backoff: the time flows try it again; null otherwise.</summary>
    public DateTimeOffset? RetryAt { get; init; }
}

/// <summary>One connection the tunnel listener accepted, as it is now.</summary>
public sealed record TunnelConnectionState
{
    public string PeerIdentity { get; init; } = "";
    public string LocalIdentity { get; init; } = "";

    /// <summary>Flows the peer opened on it that are still carried.</summary>
    public int Streams { get; init; }
}
