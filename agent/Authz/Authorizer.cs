using Microsoft.Extensions.Logging;

namespace NodeMesh.Authz;

/// <summary>
/// Makes the decision for one connection with the policies in force, and logs and counts denials (both
/// identities and the rule) and what dry-run policies would have denied.
/// </summary>
internal sealed partial class Authorizer(AuthzMetrics metrics, ILogger<Authorizer> logger)
{
    /// <summary>The policy name denials by STRICT mode are counted under.</summary>
    public const string StrictMode = "strict-mode";

    /// <summary>
    /// The decision alone, without logging: plaintext (no caller identity) to a STRICT workload is refused
    /// whatever the policies say; everything else is up to <paramref name="policies"/>.
    /// </summary>
    public static AuthzDecision Decide(PolicySet policies, in AuthzRequest request)
    {
        if (request.SourceIdentity is null && !request.Destination.AcceptsPlaintext)
        {
            return new AuthzDecision(false, $"plaintext refused: {request.Destination.Name} is STRICT (mesh traffic only)", StrictMode, null, null);
        }

        return policies.Evaluate(request);
    }

    /// <summary>Decides with <paramref name="policies"/> (those of the snapshot the destination was found in), logging and counting.</summary>
    public AuthzDecision Authorize(PolicySet policies, in AuthzRequest request, string path)
    {
        AuthzDecision decision = Decide(policies, request);
        metrics.Decided(request.Destination.Name, decision.Allowed, decision.Policy);
        string caller = request.SourceIdentity?.Uri ?? $"unauthenticated {request.SourceAddress}";
        if (!decision.Allowed)
        {
            metrics.Deny(request.Destination.Name, decision.Policy);
            Log.Denied(logger, path, caller, request.SourceAddress.ToString(), request.Destination.Identity.Uri, request.DestinationPort, decision.Describe());
        }
        else if (decision.DryRunDeniedBy is { } dryRun)
        {
            metrics.DryRunDeny(request.Destination.Name, dryRun);
            Log.DryRunDenied(logger, path, caller, request.Destination.Identity.Uri, request.DestinationPort, dryRun);
        }

        return decision;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 400, Level = LogLevel.Warning, Message = "{Path} flow denied: {SourceIdentity} ({SourceAddress}) -> {DestinationIdentity} port {Port}: {Reason}")]
        public static partial void Denied(ILogger logger, string path, string sourceIdentity, string sourceAddress, string destinationIdentity, int port, string reason);

        [LoggerMessage(EventId = 401, Level = LogLevel.Information, Message = "{Path} flow would be denied (dry run, policy {Policy}): {SourceIdentity} -> {DestinationIdentity} port {Port}; allowed")]
        public static partial void DryRunDenied(ILogger logger, string path, string sourceIdentity, string destinationIdentity, int port, string policy);
    }
}
