using System.Collections.Frozen;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Contracts;

namespace NodeMesh.Consumers;

/// <summary>Why a credential did or did not name a consumer.</summary>
internal enum ConsumerMatchKind
{
    /// <summary>An active consumer.</summary>
    Found,

    /// <summary>No consumer has this key or certificate (or it is not a key's form).</summary>
    Unknown,

    /// <summary>The key was revoked or has expired.</summary>
    KeyInvalid,

    /// <summary>The consumer is disabled or awaiting approval.</summary>
    NotActive,
}

internal readonly record struct ConsumerMatch(ConsumerMatchKind Kind, ConsumerRecord? Consumer);

/// <summary>
/// Every consumer at one moment, indexed for the gateway: by name, by API key id, and by the client certificate
/// names that identify them. Immutable: the store builds a new one on each change and swaps it in.
/// </summary>
internal sealed class ConsumerDirectory
{
    private readonly FrozenDictionary<string, ConsumerRecord> _byName;
    private readonly FrozenDictionary<string, (ConsumerRecord Consumer, StoredApiKey Key)> _byKeyId;
    private readonly FrozenDictionary<string, ConsumerRecord> _byCertificate;

    public ConsumerDirectory(IEnumerable<ConsumerRecord> consumers, bool loaded = true)
    {
        Loaded = loaded;
        var byName = new Dictionary<string, ConsumerRecord>(StringComparer.Ordinal);
        var byKey = new Dictionary<string, (ConsumerRecord, StoredApiKey)>(StringComparer.Ordinal);
        var byCertificate = new Dictionary<string, ConsumerRecord>(StringComparer.Ordinal);
        foreach (ConsumerRecord consumer in consumers)
        {
            byName[consumer.Name] = consumer;
            foreach (StoredApiKey key in consumer.Keys)
            {
                byKey[key.Id] = (consumer, key);
            }

            foreach (string certificate in consumer.Certificates)
            {
                byCertificate[Normalized(certificate)] = consumer;
            }
        }

        _byName = byName.ToFrozenDictionary(StringComparer.Ordinal);
        _byKeyId = byKey.ToFrozenDictionary(StringComparer.Ordinal);
        _byCertificate = byCertificate.ToFrozenDictionary(StringComparer.Ordinal);
    }

    public static ConsumerDirectory NotLoaded { get; } = new([], loaded: false);

    /// <summary>False until the store was first read: a credential cannot be judged yet (the gateway answers 503, not 401).</summary>
    public bool Loaded { get; }

    public int Count => _byName.Count;

    public IEnumerable<ConsumerRecord> All => _byName.Values.OrderBy(c => c.Name, StringComparer.Ordinal);

    public ConsumerRecord? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The consumer whose valid key this is.</summary>
    public ConsumerMatch ByApiKey(string key, DateTimeOffset now)
    {
        if (!ApiKeys.TryParseId(key, out string? id) || !_byKeyId.TryGetValue(id, out (ConsumerRecord Consumer, StoredApiKey Key) found) || !ApiKeys.Matches(found.Key, key))
        {
            return new ConsumerMatch(ConsumerMatchKind.Unknown, null);
        }

        if (!found.Key.ValidAt(now))
        {
            return new ConsumerMatch(ConsumerMatchKind.KeyInvalid, found.Consumer);
        }

        return Active(found.Consumer);
    }

    /// <summary>
    /// The consumer a (listener-validated) client certificate names, looked up by its SHA-256 fingerprint, then its
    /// URI and DNS names, then its subject: the most specific first.
    /// </summary>
    public ConsumerMatch ByCertificate(X509Certificate2 certificate)
    {
        foreach (string name in CertificateNames(certificate))
        {
            if (_byCertificate.TryGetValue(name, out ConsumerRecord? consumer))
            {
                return Active(consumer);
            }
        }

        return new ConsumerMatch(ConsumerMatchKind.Unknown, null);
    }

    private static ConsumerMatch Active(ConsumerRecord consumer) =>
        new(consumer.State == ConsumerStates.Active ? ConsumerMatchKind.Found : ConsumerMatchKind.NotActive, consumer);

    internal static IEnumerable<string> CertificateNames(X509Certificate2 certificate)
    {
        yield return "sha256:" + certificate.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256).ToLowerInvariant();
        List<string> uris;
        try
        {
            uris = Identity.PeerCertificateVerifier.ReadUriSans(certificate);
        }
        catch (System.Formats.Asn1.AsnContentException)
        {
            uris = [];
        }

        foreach (string uri in uris)
        {
            yield return "uri:" + uri;
        }

        if (certificate.Extensions[Oids.SubjectAltName] is X509SubjectAlternativeNameExtension san)
        {
            foreach (string dns in san.EnumerateDnsNames())
            {
                yield return "dns:" + dns.ToLowerInvariant();
            }
        }

        yield return "subject:" + certificate.SubjectName.Name;
    }

    /// <summary>A stored certificate entry in the form lookups use (fingerprints and DNS names are case-insensitive).</summary>
    internal static string Normalized(string entry) =>
        entry.StartsWith("sha256:", StringComparison.Ordinal) ? "sha256:" + entry[7..].Replace(":", "", StringComparison.Ordinal).ToLowerInvariant()
        : entry.StartsWith("dns:", StringComparison.Ordinal) ? entry.ToLowerInvariant()
        : entry;

    /// <summary>Null when <paramref name="entry"/> is a certificate entry; else what is wrong with it.</summary>
    internal static string? CertificateEntryError(string entry)
    {
        int colon = entry.IndexOf(':', StringComparison.Ordinal);
        string kind = colon > 0 ? entry[..colon] : "";
        string value = colon > 0 ? entry[(colon + 1)..] : "";
        if (kind is not ("uri" or "dns" or "subject" or "sha256") || value.Length == 0 || value.Any(char.IsControl))
        {
            return $"certificate '{Printable.Of(entry)}' must be uri:SAN, dns:SAN, subject:DN or sha256:FINGERPRINT";
        }

        string hex = value.Replace(":", "", StringComparison.Ordinal);
        return kind == "sha256" && (hex.Length != 64 || !hex.All(char.IsAsciiHexDigit))
            ? $"certificate '{Printable.Of(entry)}': a SHA-256 fingerprint is 64 hex digits (colons allowed)"
            : null;
    }

    private static class Oids
    {
        public const string SubjectAltName = "2.5.29.17";
    }
}
