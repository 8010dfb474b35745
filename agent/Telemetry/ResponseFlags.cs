using NodeMesh.Contracts;

namespace NodeMesh.Telemetry;

/// <summary>The <c>response_flags</c> label of a closed flow, in Envoy's vocabulary where it has a word for it.</summary>
internal static class ResponseFlags
{
    public static string Of(FlowOutcome outcome) => outcome switch
    {
        FlowOutcome.Ok => TcpMetrics.NoFlags,

        // Envoy's UF: the connection to the destination could not be made (or was refused before it was).
        FlowOutcome.Refused => "UF",

        // Refused or closed by an authorization policy.
        FlowOutcome.Denied or FlowOutcome.ClosedByPolicy => "DENIED",

        // Envoy's UC: the connection ended abruptly (a reset from either end, the tunnel lost).
        FlowOutcome.Aborted => "UC",

        // Envoy's LR: reset by this agent (its own failure, or it stopped).
        _ => "LR",
    };
}
