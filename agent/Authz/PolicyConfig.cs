namespace NodeMesh.Authz;

// Authorization policies as written in the configuration file (shape of Istio's AuthorizationPolicy).
// Setters exist for the source-generated reader only; a loaded policy set is never changed.

/// <summary>One policy: which workloads it applies to, what it does, and the rules that trigger it.</summary>
internal sealed record PolicyConfig
{
    public string Name { get; set; } = "";

    /// <summary>Which workloads the policy applies to; empty selects every workload on the node.</summary>
    public SelectorConfig Selector { get; set; } = new();

    /// <summary>"ALLOW" or "DENY".</summary>
    public string Action { get; set; } = "ALLOW";

    /// <summary>Log and count what the policy would deny, but deny nothing.</summary>
    public bool DryRun { get; set; }

    /// <summary>The policy matches a connection if any rule matches; an empty list matches nothing.</summary>
    public IReadOnlyList<RuleConfig> Rules { get; set; } = [];
}

internal sealed record SelectorConfig
{
    /// <summary>The workload's namespace (from its SPIFFE id), exactly.</summary>
    public string? Namespace { get; set; }

    /// <summary>Every label listed must be present on the workload with exactly this value.</summary>
    public IReadOnlyDictionary<string, string>? Labels { get; set; }

    /// <summary>The workload's SPIFFE id must be one of these, exactly.</summary>
    public IReadOnlyList<string>? Identities { get; set; }
}

/// <summary>A rule matches when its source and destination both match (an absent part matches anything).</summary>
internal sealed record RuleConfig
{
    public SourceConfig? From { get; set; }
    public DestinationConfig? To { get; set; }
}

/// <summary>Every field present must match; the not- forms match when the value is none of those listed.</summary>
internal sealed record SourceConfig
{
    /// <summary>Caller SPIFFE ids, exactly; "*" means any authenticated caller.</summary>
    public IReadOnlyList<string>? Principals { get; set; }
    public IReadOnlyList<string>? NotPrincipals { get; set; }

    /// <summary>
    /// Callers a gateway authenticated, exactly (a JWT's <c>ISSUER/SUBJECT</c>, or <c>consumer:NAME</c>), carried in
    /// the flow header beside the gateway's identity; "*" means any. A flow without one never matches.
    /// </summary>
    public IReadOnlyList<string>? RequestPrincipals { get; set; }
    public IReadOnlyList<string>? NotRequestPrincipals { get; set; }
    public IReadOnlyList<string>? Namespaces { get; set; }
    public IReadOnlyList<string>? NotNamespaces { get; set; }
    public IReadOnlyList<string>? IpBlocks { get; set; }
    public IReadOnlyList<string>? NotIpBlocks { get; set; }
}

internal sealed record DestinationConfig
{
    public IReadOnlyList<int>? Ports { get; set; }
    public IReadOnlyList<int>? NotPorts { get; set; }
}
