using System.Text.Json.Serialization;
using NodeMesh.Contracts;

namespace NodeMesh.Consumers;

/// <summary>A consumer as it is stored (a state directory file, or one etcd key): its keys only as hashes.</summary>
internal sealed record ConsumerRecord
{
    public string Name { get; init; } = "";

    public string Plan { get; init; } = "";

    public string State { get; init; } = ConsumerStates.Active;

    public string Description { get; init; } = "";

    public DateTimeOffset Created { get; init; }

    public IReadOnlyList<string> Certificates { get; init; } = [];

    public IReadOnlyList<StoredApiKey> Keys { get; init; } = [];

    /// <summary>As the API shows it: the keys by id and dates, never their hashes.</summary>
    public ConsumerInfo ToInfo(ConsumerUsageInfo? usage) => new()
    {
        Name = Name,
        Plan = Plan,
        State = State,
        Description = Description,
        Created = Created,
        Certificates = Certificates,
        Keys = [.. Keys.Select(k => new ApiKeyInfo { Id = k.Id, Created = k.Created, ExpiresAt = k.ExpiresAt, RevokedAt = k.RevokedAt })],
        Usage = usage,
    };
}

/// <summary>An issued API key: its id (the key's public part) and the SHA-256 of the whole key.</summary>
internal sealed record StoredApiKey
{
    public string Id { get; init; } = "";

    /// <summary>Lowercase hex of SHA-256 over the key's text.</summary>
    public string Sha256 { get; init; } = "";

    public DateTimeOffset Created { get; init; }

    public DateTimeOffset? ExpiresAt { get; init; }

    public DateTimeOffset? RevokedAt { get; init; }

    /// <summary>Accepted at <paramref name="now"/>: not revoked, not expired.</summary>
    public bool ValidAt(DateTimeOffset now) => RevokedAt is null && (ExpiresAt is not { } expires || now < expires);
}

/// <summary>The state directory's file of consumers (one node without a registry store).</summary>
internal sealed record ConsumerFile
{
    public int Version { get; init; } = 1;

    public IReadOnlyList<ConsumerRecord> Consumers { get; init; } = [];
}

/// <summary>The state directory's file of usage counts, so a restart does not give a consumer its day's quota again.</summary>
internal sealed record ConsumerUsageFile
{
    public IReadOnlyDictionary<string, ConsumerUsageInfo> Consumers { get; init; } = new Dictionary<string, ConsumerUsageInfo>();
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    AllowDuplicateProperties = false, WriteIndented = true)]
[JsonSerializable(typeof(ConsumerRecord))]
[JsonSerializable(typeof(ConsumerFile))]
[JsonSerializable(typeof(ConsumerUsageFile))]
internal sealed partial class ConsumerJsonContext : JsonSerializerContext;
