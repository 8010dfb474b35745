namespace NodeMesh.Tunnel;

/// <summary>
/// Why a stream was reset or a connection went away: the u32 code carried by RESET and GOAWAY frames. Codes a
/// receiver does not know are treated as <see cref="Internal"/>.
/// </summary>
internal enum TunnelError : uint
{
    /// <summary>An orderly end: the agent is shutting down or releasing an idle connection.</summary>
    None = 0,

    /// <summary>The peer broke the framing rules (bad header, unknown stream, open from the wrong side).</summary>
    Protocol = 1,

    /// <summary>The peer sent beyond the stream's or the connection's credit, or granted credit past 2^31-1.</summary>
    FlowControl = 2,

    /// <summary>The stream was refused before any of it was processed: safe for the sender to retry elsewhere.</summary>
    Refused = 3,

    /// <summary>The peer exceeded a limit (streams, queued control frames, streams per identity).</summary>
    EnhanceYourCalm = 4,

    /// <summary>The flow was cancelled by the side that sends the reset (its client or workload went away).</summary>
    Cancelled = 5,

    /// <summary>The peer has been silent past the keepalive timeout.</summary>
    KeepaliveTimeout = 6,

    /// <summary>Anything else (a failure inside the agent).</summary>
    Internal = 7,
}
