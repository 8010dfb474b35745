using System.Text.Json.Serialization;

namespace NodeMesh.Contracts;

/// <summary>How a flow ended; <see cref="FlowRecord.Result"/> adds the detail in words.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<FlowOutcome>))]
public enum FlowOutcome
{
    /// <summary>Both directions ended in order.</summary>
    Ok,

    /// <summary>Refused before any byte was carried (no route, no tunnel, connect failed, checks failed).</summary>
    Refused,

    /// <summary>Refused by an authorization policy, or by STRICT mode for plaintext.</summary>
    Denied,

    /// <summary>Carried, then ended abnormally (a reset, a broken socket, the tunnel lost, the agent stopping).</summary>
    Aborted,

    /// <summary>Carried, then closed because a policy change now denies it.</summary>
    ClosedByPolicy,

    /// <summary>The agent failed handling it (a bug); the sockets were reset.</summary>
    Failed,
}
