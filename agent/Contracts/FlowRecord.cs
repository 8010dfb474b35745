namespace NodeMesh.Contracts;

/// <summary>One finished (or refused) flow as the agent saw it.</summary>
public sealed record FlowRecord
{
    public required string Direction { get; init; }
    public required string Path { get; init; }
    public required string Source { get; init; }
    public required string Destination { get; init; }
    public string? SourceWorkload { get; init; }
    public string? DestinationWorkload { get; init; }
    public string? SourceIdentity { get; init; }

    /// <summary>For a flow from a gateway: the caller it authenticated (a JWT's ISSUER/SUBJECT, or consumer:NAME).</summary>
    public string? RequestPrincipal { get; init; }
    public string? DestinationIdentity { get; init; }
    public bool Encrypted { get; init; }
    public long BytesSent { get; init; }
    public long BytesReceived { get; init; }
    public double DurationMs { get; init; }
    public FlowOutcome Outcome { get; init; }
    public required string Result { get; init; }
    public DateTimeOffset Ended { get; init; }

    /// <summary>Its place in the agent's flow log (1, 2, ...), set when it is listed; a cursor for <c>flows --follow</c>.</summary>
    public long Sequence { get; init; }
}
