using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Consumers;

/// <summary>
/// API keys: <c>nmk_ID_SECRET</c>, with a 16-hex-digit id (how a key is found, listed and revoked) and 32 random
/// bytes of secret (base64url). Only the SHA-256 of the whole key is stored: a key has 256 bits of entropy, so a
/// fast hash is as safe as a slow one (nothing to guess), and checking costs a microsecond per request.
/// </summary>
internal static class ApiKeys
{
    private const string Scheme = "nmk_";
    private const int IdLength = 16;
    private const int SecretLength = 43;

    /// <summary>A new key: its text (to show once) and what is stored of it.</summary>
    public static (string Key, StoredApiKey Stored) Issue(DateTimeOffset now, TimeSpan? validFor)
    {
        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(IdLength / 2));
        string secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        string key = $"{Scheme}{id}_{secret}";
        return (key, new StoredApiKey { Id = id, Sha256 = Hash(key), Created = now, ExpiresAt = now + validFor });
    }

    /// <summary>The id of a key that has the form of one; false (and no id) for anything else.</summary>
    public static bool TryParseId(ReadOnlySpan<char> key, [NotNullWhen(true)] out string? id)
    {
        id = null;
        if (key.Length != Scheme.Length + IdLength + 1 + SecretLength || !key.StartsWith(Scheme, StringComparison.Ordinal) || key[Scheme.Length + IdLength] != '_')
        {
            return false;
        }

        ReadOnlySpan<char> idPart = key.Slice(Scheme.Length, IdLength);
        if (!IsId(idPart))
        {
            return false;
        }

        id = idPart.ToString();
        return true;
    }

    /// <summary>16 lowercase hex digits: the form of a key id.</summary>
    public static bool IsId(ReadOnlySpan<char> id) => id.Length == IdLength && !id.ContainsAnyExcept(LowerHex);

    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    /// <summary>Whether <paramref name="key"/> is the one <paramref name="stored"/> was issued as (in constant time).</summary>
    public static bool Matches(StoredApiKey stored, string key)
    {
        Span<byte> actual = stackalloc byte[SHA256.HashSizeInBytes];
        Span<byte> expected = stackalloc byte[SHA256.HashSizeInBytes];
        if (stored.Sha256.Length != expected.Length * 2 || Convert.FromHexString(stored.Sha256, expected, out _, out _) != System.Buffers.OperationStatus.Done)
        {
            return false;
        }

        if (key.Length > 128)
        {
            return false;
        }

        Span<byte> text = stackalloc byte[128];
        int length = Encoding.ASCII.GetBytes(key, text);
        SHA256.HashData(text[..length], actual);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    internal static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(key)));
}
