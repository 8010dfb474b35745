using Microsoft.Extensions.Logging;

namespace NodeMesh.Authz;

/// <summary>
/// Makes the decision for one connection with the policies in force, and logs and counts denials (both
/// identities and the rule) and what dry-run policies would have denied.
/// </summary>
internal sealed partial class Authorizer(PolicyStore policies, AuthzMetrics metrics, ILogger<Authorizer> logger)
{
    public AuthzDecision Authorize(in AuthzRequest request, string path)
    {
        AuthzDecision decision = policies.Current.Evaluate(request);
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
