using NodeMesh.Contracts;
using NodeMesh.Identity;

namespace NodeMesh.Consumers;

/// <summary>
/// The consumer operations as pure changes of one record (what the stores apply, read-modify-write): create,
/// update, enable and disable, issue, rotate and revoke keys. Each refuses what is wrong with a message naming it.
/// </summary>
internal static class ConsumerRules
{
    /// <summary>Keys a consumer may hold at once, revoked ones included (they are kept for the record until pruned).</summary>
    public const int MaxKeys = 20;

    public const int MaxCertificates = 20;

    /// <summary>Null when <paramref name="name"/> can name a consumer (as nodes and workloads are named: 1-63 of a-z, 0-9, '-', '.').</summary>
    public static string? NameError(string? name) =>
        MeshIdentities.IsNodeName(name) ? null : $"consumer name '{Printable.Of(name ?? "")}' must be 1-63 of a-z, 0-9, '-', '.' (starting and ending with a letter or digit)";

    /// <summary>Null when a stored record is whole and well formed.</summary>
    public static string? RecordError(ConsumerRecord? record)
    {
        if (record is null)
        {
            return "null";
        }

        if (NameError(record.Name) is { } name)
        {
            return name;
        }

        if (record.Plan is null || record.Description is null)
        {
            return $"{record.Name}: plan and description must be strings";
        }

        if (record.State is null || !ConsumerStates.IsKnown(record.State))
        {
            return $"{record.Name}: state '{Printable.Of(record.State ?? "null")}' must be active, disabled or pending";
        }

        if (record.Keys is null || record.Certificates is null || record.Keys.Any(k => k is null || !ApiKeys.IsId(k.Id) || k.Sha256 is not { Length: 64 }))
        {
            return $"{record.Name}: keys and certificates must be lists, each key with a 16-hex-digit id and a 64-hex-digit sha256";
        }

        return record.Certificates.Select(ConsumerDirectory.CertificateEntryError).FirstOrDefault(e => e is not null) is { } certificate
            ? $"{record.Name}: {certificate}"
            : null;
    }

    public static ConsumerRecord Create(ConsumerRecord? existing, ConsumerChange change, DateTimeOffset now)
    {
        if (existing is not null)
        {
            throw new ConsumerChangeException($"consumer {change.Name} exists already", ConsumerRefusal.Conflict);
        }

        string state = change.State ?? ConsumerStates.Active;
        if (state is not (ConsumerStates.Active or ConsumerStates.Pending))
        {
            throw new ConsumerChangeException($"a new consumer's state must be active or pending, not '{Printable.Of(state)}'");
        }

        return Update(new ConsumerRecord { Name = change.Name, State = state, Created = now }, change with { State = null });
    }

    /// <summary>Sets the plan, description and certificates the change names (null fields stay).</summary>
    public static ConsumerRecord Update(ConsumerRecord? existing, ConsumerChange change)
    {
        ConsumerRecord consumer = Existing(existing, change.Name);
        if (change.Certificates is { } certificates)
        {
            if (certificates.Count > MaxCertificates)
            {
                throw new ConsumerChangeException($"consumer {change.Name}: at most {MaxCertificates} certificates");
            }

            foreach (string entry in certificates)
            {
                if (ConsumerDirectory.CertificateEntryError(entry ?? "") is { } error)
                {
                    throw new ConsumerChangeException(error);
                }
            }
        }

        if (change.Description is { Length: > 200 } || change.Description?.Any(char.IsControl) == true)
        {
            throw new ConsumerChangeException("description: at most 200 printable characters");
        }

        if (change.Plan is { Length: > 0 } plan && NameError(plan) is not null)
        {
            throw new ConsumerChangeException($"plan '{Printable.Of(plan)}' is not a plan's name");
        }

        return consumer with
        {
            Plan = change.Plan ?? consumer.Plan,
            Description = change.Description ?? consumer.Description,
            Certificates = change.Certificates is { } c ? [.. c.Distinct(StringComparer.Ordinal)] : consumer.Certificates,
        };
    }

    public static ConsumerRecord SetState(ConsumerRecord? existing, string name, string state) => Existing(existing, name) with { State = state };

    /// <summary>A new key beside the consumer's others; its text is given back once.</summary>
    public static ConsumerRecord IssueKey(ConsumerRecord? existing, string name, TimeSpan? validFor, DateTimeOffset now, out string key)
    {
        ConsumerRecord consumer = Existing(existing, name);
        List<StoredApiKey> keys = [.. Pruned(consumer.Keys, now)];
        if (keys.Count >= MaxKeys)
        {
            throw new ConsumerChangeException($"consumer {name} holds {MaxKeys} keys already: revoke one first", ConsumerRefusal.Conflict);
        }

        (key, StoredApiKey stored) = ApiKeys.Issue(now, validFor);
        keys.Add(stored);
        return consumer with { Keys = keys };
    }

    /// <summary>A new key in place of <paramref name="keyId"/>, which stays valid for <paramref name="grace"/> (none: it ends now).</summary>
    public static ConsumerRecord RotateKey(ConsumerRecord? existing, string name, string keyId, TimeSpan? validFor, TimeSpan grace, DateTimeOffset now, out string key)
    {
        ConsumerRecord consumer = Existing(existing, name);
        StoredApiKey old = ValidKey(consumer, keyId, now);
        DateTimeOffset ends = now + grace;
        StoredApiKey ending = grace > TimeSpan.Zero
            ? old with { ExpiresAt = old.ExpiresAt is { } expires && expires < ends ? expires : ends }
            : old with { RevokedAt = now };
        ConsumerRecord rotated = consumer with { Keys = [.. consumer.Keys.Select(k => k.Id == keyId ? ending : k)] };
        return IssueKey(rotated, name, validFor, now, out key);
    }

    public static ConsumerRecord RevokeKey(ConsumerRecord? existing, string name, string keyId, DateTimeOffset now)
    {
        ConsumerRecord consumer = Existing(existing, name);
        _ = FindKey(consumer, keyId);
        return consumer with { Keys = [.. consumer.Keys.Select(k => k.Id == keyId && k.RevokedAt is null ? k with { RevokedAt = now } : k)] };
    }

    private static ConsumerRecord Existing(ConsumerRecord? existing, string name) =>
        existing ?? throw new ConsumerChangeException($"no consumer named {name}", ConsumerRefusal.NotFound);

    private static StoredApiKey FindKey(ConsumerRecord consumer, string keyId) =>
        consumer.Keys.FirstOrDefault(k => k.Id == keyId) ?? throw new ConsumerChangeException($"consumer {consumer.Name} has no key {Printable.Of(keyId)}", ConsumerRefusal.NotFound);

    private static StoredApiKey ValidKey(ConsumerRecord consumer, string keyId, DateTimeOffset now)
    {
        StoredApiKey key = FindKey(consumer, keyId);
        return key.ValidAt(now) ? key : throw new ConsumerChangeException($"key {keyId} of consumer {consumer.Name} is revoked or expired: issue a new one instead", ConsumerRefusal.Conflict);
    }

    /// <summary>Keys that ended more than 30 days ago are dropped: the record stays small and still shows recent revocations.</summary>
    private static IEnumerable<StoredApiKey> Pruned(IEnumerable<StoredApiKey> keys, DateTimeOffset now) =>
        keys.Where(k => (k.RevokedAt ?? k.ExpiresAt ?? DateTimeOffset.MaxValue) > now - TimeSpan.FromDays(30));
}
