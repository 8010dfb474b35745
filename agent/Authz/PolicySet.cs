namespace NodeMesh.Authz;

/// <summary>
/// All policies of one configuration snapshot, and the decision procedure:
/// any matching DENY denies; if no ALLOW policy selects the workload, allow; if an ALLOW policy matches,
/// allow; otherwise deny. Dry-run policies are evaluated the same way on the side: what they would deny is
/// reported, never enforced.
/// </summary>
internal sealed class PolicySet
{
    public static readonly PolicySet Empty = new([]);

    private readonly AuthorizationPolicy[] _enforced;
    private readonly AuthorizationPolicy[] _dryRun;

    public PolicySet(IReadOnlyList<AuthorizationPolicy> policies)
    {
        Policies = policies;
        _enforced = policies.Where(p => !p.DryRun).ToArray();
        _dryRun = policies.Where(p => p.DryRun).ToArray();
    }

    public IReadOnlyList<AuthorizationPolicy> Policies { get; }

    public AuthzDecision Evaluate(in AuthzRequest request)
    {
        AuthzDecision enforced = Decide(_enforced, request);
        string? dryRunDenied = null;
        if (_dryRun.Length > 0)
        {
            // Dry-run policies are judged as if they were enforced alongside the real ones.
            AuthzDecision withDryRun = Decide([.. _enforced, .. _dryRun], request);
            if (enforced.Allowed && !withDryRun.Allowed)
            {
                dryRunDenied = withDryRun.Policy ?? "no ALLOW policy matched";
            }
        }

        return enforced with { DryRunDeniedBy = dryRunDenied };
    }

    private static AuthzDecision Decide(AuthorizationPolicy[] policies, in AuthzRequest request)
    {
        bool anyAllowSelects = false;
        AuthzDecision? allowed = null;
        foreach (AuthorizationPolicy policy in policies)
        {
            if (!policy.Selector.Selects(request.Destination))
            {
                continue;
            }

            int rule = policy.Match(request);
            if (policy.Action == PolicyAction.Deny)
            {
                if (rule >= 0)
                {
                    return new AuthzDecision(false, "denied by a DENY policy", policy.Name, rule, null);
                }
            }
            else
            {
                anyAllowSelects = true;
                if (rule >= 0 && allowed is null)
                {
                    allowed = new AuthzDecision(true, "allowed by an ALLOW policy", policy.Name, rule, null);
                }
            }
        }

        if (!anyAllowSelects)
        {
            return AuthzDecision.AllowedByDefault(null);
        }

        return allowed ?? new AuthzDecision(false, "no ALLOW policy matched", null, null, null);
    }
}
