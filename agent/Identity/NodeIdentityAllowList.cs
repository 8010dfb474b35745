namespace NodeMesh.Identity;

/// <summary>
/// ca.nodeIdentities: which workload identities the CA may issue to a node, beyond the registry placing them
/// there. An entry is an exact SPIFFE id or a path prefix ending in "/*" (any identity below that path).
/// </summary>
internal static class NodeIdentityAllowList
{
    public static bool Allows(IReadOnlyDictionary<string, IReadOnlyList<string>> lists, string node, SpiffeId identity) =>
        !lists.TryGetValue(node, out IReadOnlyList<string>? allowed) || allowed.Any(entry => Matches(entry, identity));

    public static bool Matches(string entry, SpiffeId identity) =>
        entry.EndsWith("/*", StringComparison.Ordinal)
            ? identity.Uri.StartsWith(entry[..^1], StringComparison.Ordinal)
            : string.Equals(entry, identity.Uri, StringComparison.Ordinal);

    /// <summary>Why an entry is not usable in <paramref name="trustDomain"/>, or null.</summary>
    public static string? Problem(string? entry, string trustDomain)
    {
        if (string.IsNullOrEmpty(entry))
        {
            return "an entry is empty";
        }

        string exact = entry.EndsWith("/*", StringComparison.Ordinal) ? entry[..^2] : entry;
        string root = $"spiffe://{trustDomain}";
        if (exact == root)
        {
            return null;
        }

        // A prefix must itself be a path of the trust domain (spiffe://td/ns/x or spiffe://td/ns/x/sa): some id below it parses.
        bool prefix = entry.EndsWith("/*", StringComparison.Ordinal);
        SpiffeId? id = null;
        string? error = null;
        if (prefix ? !(SpiffeId.TryParse(exact + "/sa/x", out id, out _) || SpiffeId.TryParse(exact + "/x", out id, out error)) : !SpiffeId.TryParse(exact, out id, out error))
        {
            return $"'{SpiffeId.Printable(entry)}' is not a SPIFFE id or a prefix of one ending in /*{(error is null ? "" : $": {error}")}";
        }

        return id.TrustDomain == trustDomain ? null : $"'{SpiffeId.Printable(entry)}' is not in trust domain {trustDomain}";
    }
}
