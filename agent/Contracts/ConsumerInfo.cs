namespace NodeMesh.Contracts;

/// <summary>
/// An API consumer as the local API, the admin API and <c>nodemesh consumer</c> show it: who it is, its plan, its
/// keys (never the keys themselves: those are shown once, when issued), the client certificates that identify it,
/// and what it used today.
/// </summary>
public sealed record ConsumerInfo
{
    public string Name { get; init; } = "";

    /// <summary>One of <c>gateway.plans</c>; empty: no plan (no consumer limits, no quota).</summary>
    public string Plan { get; init; } = "";

    /// <summary>"active", "disabled" (its requests answered 403) or "pending" (signed up, awaiting approval; 403 too).</summary>
    public string State { get; init; } = ConsumerStates.Active;

    public string Description { get; init; } = "";

    public DateTimeOffset Created { get; init; }

    /// <summary>Client certificates that identify it: <c>uri:SAN</c>, <c>dns:SAN</c>, <c>subject:DN</c> or <c>sha256:FINGERPRINT</c>.</summary>
    public IReadOnlyList<string> Certificates { get; init; } = [];

    public IReadOnlyList<ApiKeyInfo> Keys { get; init; } = [];

    /// <summary>What this node's gateway counted for it (null where the agent does not count, as in a listing from the store alone).</summary>
    public ConsumerUsageInfo? Usage { get; init; }
}

public static class ConsumerStates
{
    public const string Active = "active";
    public const string Disabled = "disabled";
    public const string Pending = "pending";

    public static bool IsKnown(string state) => state is Active or Disabled or Pending;
}

/// <summary>An API key of a consumer, by its id (the key's public part); its secret is stored only as a hash.</summary>
public sealed record ApiKeyInfo
{
    public string Id { get; init; } = "";

    public DateTimeOffset Created { get; init; }

    /// <summary>When it stops being accepted (a rotation's grace, or an expiry asked for when issued); null: never.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>When it was revoked; a revoked key is never accepted again.</summary>
    public DateTimeOffset? RevokedAt { get; init; }
}

/// <summary>A consumer's requests through this node's gateway.</summary>
public sealed record ConsumerUsageInfo
{
    /// <summary>The UTC day <see cref="RequestsToday"/> counts (yyyy-MM-dd).</summary>
    public string Day { get; init; } = "";

    public long RequestsToday { get; init; }

    /// <summary>Its plan's daily quota; null: none.</summary>
    public long? DailyQuota { get; init; }

    /// <summary>Every request since the counts began (they are kept in the state directory).</summary>
    public long Requests { get; init; }

    /// <summary>Requests refused by its plan's limits or quota.</summary>
    public long Refused { get; init; }

    public DateTimeOffset? LastSeen { get; init; }
}

/// <summary>What a consumer command changes: the consumer named, and the fields it sets (null: unchanged).</summary>
public sealed record ConsumerChange
{
    public string Name { get; init; } = "";

    public string? Plan { get; init; }

    public string? Description { get; init; }

    /// <summary>Replaces its certificate list.</summary>
    public IReadOnlyList<string>? Certificates { get; init; }

    /// <summary>consumer-create: "active" (default) or "pending".</summary>
    public string? State { get; init; }

    /// <summary>consumer-rotate-key, consumer-revoke-key: the key's id.</summary>
    public string? KeyId { get; init; }

    /// <summary>consumer-issue-key, consumer-rotate-key: how long the new key is valid ("90d"); null: until revoked.</summary>
    public string? ExpiresIn { get; init; }

    /// <summary>consumer-rotate-key: how long the old key stays valid beside the new one ("1h"); null: not at all.</summary>
    public string? Grace { get; init; }
}
