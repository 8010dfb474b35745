using System.Collections.Frozen;
using NodeMesh.Identity;

namespace NodeMesh.Authz;

/// <summary>A validated, compiled policy. Matching is exact throughout: no prefixes, no patterns, no case folding.</summary>
internal sealed class AuthorizationPolicy
{
    public AuthorizationPolicy(string name, PolicyAction action, bool dryRun, PolicySelector selector, IReadOnlyList<PolicyRule> rules)
    {
        Name = name;
        Action = action;
        DryRun = dryRun;
        Selector = selector;
        Rules = rules;
    }

    public string Name { get; }

    public PolicyAction Action { get; }

    public bool DryRun { get; }

    public PolicySelector Selector { get; }

    public IReadOnlyList<PolicyRule> Rules { get; }

    /// <summary>The index of the first rule matching the request, or -1.</summary>
    public int Match(in AuthzRequest request)
    {
        for (int i = 0; i < Rules.Count; i++)
        {
            if (Rules[i].Matches(request))
            {
                return i;
            }
        }

        return -1;
    }
}

internal enum PolicyAction
{
    Allow,
    Deny,
}

internal sealed record PolicySelector(string? Namespace, FrozenDictionary<string, string>? Labels, FrozenSet<SpiffeId>? Identities)
{
    public bool Selects(IAuthzSubject workload)
    {
        if (Namespace is not null && !string.Equals(workload.Identity.Namespace, Namespace, StringComparison.Ordinal))
        {
            return false;
        }

        if (Identities is not null && !Identities.Contains(workload.Identity))
        {
            return false;
        }

        if (Labels is not null)
        {
            foreach ((string key, string value) in Labels)
            {
                if (!workload.Labels.TryGetValue(key, out string? actual) || !string.Equals(actual, value, StringComparison.Ordinal))
                {
                    return false;
                }
            }
        }

        return true;
    }
}

/// <summary>One rule; a null field is absent and matches anything.</summary>
internal sealed record PolicyRule(
    FrozenSet<SpiffeId>? Principals,
    bool AnyPrincipal,
    FrozenSet<SpiffeId>? NotPrincipals,
    FrozenSet<string>? Namespaces,
    FrozenSet<string>? NotNamespaces,
    IReadOnlyList<Cidr>? IpBlocks,
    IReadOnlyList<Cidr>? NotIpBlocks,
    FrozenSet<int>? Ports,
    FrozenSet<int>? NotPorts)
{
    /// <summary>Gateway-authenticated callers; "*" (with an empty set): any. Null: not part of the rule.</summary>
    public FrozenSet<string>? RequestPrincipals { get; init; }

    public bool AnyRequestPrincipal { get; init; }

    public FrozenSet<string>? NotRequestPrincipals { get; init; }

    public bool Matches(in AuthzRequest request)
    {
        string? principal = request.RequestPrincipal;
        if (RequestPrincipals is not null && (principal is null || !(AnyRequestPrincipal || RequestPrincipals.Contains(principal))))
        {
            return false;
        }

        if (NotRequestPrincipals is not null && principal is not null && NotRequestPrincipals.Contains(principal))
        {
            return false;
        }

        SpiffeId? source = request.SourceIdentity;
        if (Principals is not null || AnyPrincipal)
        {
            // An unauthenticated (plaintext) caller never matches a principal.
            if (source is null || !(AnyPrincipal || Principals!.Contains(source)))
            {
                return false;
            }
        }

        if (NotPrincipals is not null && source is not null && NotPrincipals.Contains(source))
        {
            return false;
        }

        if (Namespaces is not null && (source is null || !Namespaces.Contains(source.Namespace)))
        {
            return false;
        }

        if (NotNamespaces is not null && source is not null && NotNamespaces.Contains(source.Namespace))
        {
            return false;
        }

        System.Net.IPAddress address = request.SourceAddress;
        if (IpBlocks is not null && !IpBlocks.Any(b => b.Contains(address)))
        {
            return false;
        }

        if (NotIpBlocks is not null && NotIpBlocks.Any(b => b.Contains(address)))
        {
            return false;
        }

        if (Ports is not null && !Ports.Contains(request.DestinationPort))
        {
            return false;
        }

        return NotPorts is null || !NotPorts.Contains(request.DestinationPort);
    }
}
