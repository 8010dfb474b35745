using System.Net;
using NodeMesh.Identity;

namespace NodeMesh.Authz;

/// <summary>What a policy decision is about: who calls (identity, if authenticated, and address), and where.</summary>
/// <param name="RequestPrincipal">
/// For a flow from a gateway: the caller it authenticated (a JWT's <c>iss/sub</c>, or <c>consumer:NAME</c>); null otherwise.
/// </param>
internal readonly record struct AuthzRequest(IAuthzSubject Destination, int DestinationPort, SpiffeId? SourceIdentity, IPAddress SourceAddress, string? RequestPrincipal = null);

/// <summary>
/// The outcome of evaluating the policies for one connection, with the policy and rule that decided it.
/// A dry-run policy never changes <see cref="Allowed"/>; what it would have denied is reported beside it.
/// </summary>
internal sealed record AuthzDecision(bool Allowed, string Reason, string? Policy, int? Rule, string? DryRunDeniedBy)
{
    public static AuthzDecision AllowedByDefault(string? dryRun) => new(true, "no ALLOW policy selects the workload", null, null, dryRun);

    public string Describe() => Policy is null || Rule is null ? Reason : $"{Reason} (policy {Policy}, rule {Rule})";
}
