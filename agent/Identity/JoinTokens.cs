using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Identity;

/// <summary>What a valid join token says: which node may join, until when, and its random id (for logs).</summary>
internal sealed record JoinToken(string Node, DateTimeOffset ExpiresAt, string Id);

/// <summary>
/// Join tokens, created by <c>nodemesh ca token create --node NAME --ttl 1h</c> and presented once by a new
/// node to obtain its node certificate. A token is <c>nmjoin1.&lt;payload&gt;.&lt;mac&gt;</c>: the payload
/// (base64url) says <c>join</c>, the node name, the expiry (Unix seconds) and a random id; the MAC is
/// HMAC-SHA256 over the prefix and payload with a secret that never leaves the CA directory (<c>join.key</c>,
/// 0600). So a token is unforgeable without that secret, useful for one purpose (joining) and one node only,
/// and worthless after its expiry. It is also single-use: <see cref="TryRedeem"/> records the id of each token
/// that got a node its certificate in <c>join-redeemed</c> in the CA directory (0600, rewritten atomically), so a
/// second join with it is refused, also after the CA restarts. A joined node needs no token again: it keeps its
/// node certificate in its state directory and renews with it (<see cref="NodeIdentityStore"/>).
/// </summary>
internal sealed class JoinTokens
{
    public const string SecretFile = "join.key";
    public const string RedeemedFile = "join-redeemed";
    public const string Prefix = "nmjoin1.";
    public const int MaxTokenLength = 512;
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(366);

    private const string Purpose = "join";
    private const int SecretBytes = 32;
    private const int MacBytes = 32;
    private const int IdBytes = 12;

    private readonly byte[] _secret;
    private readonly string? _redeemedPath;
    private readonly Lock _redeemGate = new();

    /// <summary>Redeemed token ids and their expiry; only used without a directory (tests).</summary>
    private readonly Dictionary<string, Redemption> _redeemedInMemory = new(StringComparer.Ordinal);

    /// <param name="redeemedPath">Where redeemed token ids are kept; null keeps them in memory (they do not survive a restart).</param>
    public JoinTokens(byte[] secret, string? redeemedPath = null)
    {
        if (secret.Length < SecretBytes)
        {
            throw new ArgumentException($"a join-token secret must have at least {SecretBytes} bytes", nameof(secret));
        }

        _secret = (byte[])secret.Clone();
        _redeemedPath = redeemedPath;
    }

    /// <summary>Loads the secret from <c>join.key</c> in the CA directory, creating it (mode 0600) on first use.</summary>
    public static JoinTokens Open(string caDir)
    {
        string path = Path.Combine(caDir, SecretFile);
        if (!File.Exists(path))
        {
            try
            {
                CertificateAuthority.WritePrivateFile(path, Convert.ToBase64String(RandomNumberGenerator.GetBytes(SecretBytes)) + "\n");
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first; use theirs.
            }
        }

        byte[] secret;
        try
        {
            secret = Convert.FromBase64String(File.ReadAllText(path).Trim());
        }
        catch (FormatException ex)
        {
            throw new InvalidDataException($"{path} is not a base64 join-token secret", ex);
        }

        if (secret.Length < SecretBytes)
        {
            throw new InvalidDataException($"{path} holds {secret.Length} bytes; a join-token secret needs at least {SecretBytes}");
        }

        return new JoinTokens(secret, Path.Combine(caDir, RedeemedFile));
    }

    /// <summary>Reads a token lifetime as written on the command line: a positive whole number and a unit, <c>90s</c>, <c>30m</c>, <c>1h</c>, <c>7d</c>.</summary>
    public static bool TryParseTtl(string? text, out TimeSpan ttl, [NotNullWhen(false)] out string? error)
    {
        ttl = TimeSpan.Zero;
        error = $"'{SpiffeId.Printable(text ?? "")}' is not a duration: write a whole number and s, m, h or d (e.g. 1h)";
        if (string.IsNullOrEmpty(text) || text.Length > 12
            || !long.TryParse(text.AsSpan(0, text.Length - 1), NumberStyles.None, CultureInfo.InvariantCulture, out long value) || value <= 0)
        {
            return false;
        }

        long unitSeconds = text[^1] switch
        {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => 0,
        };
        if (unitSeconds == 0)
        {
            return false;
        }

        // Compared before converting: 11 digits of hours or days overflow a TimeSpan.
        if (value > (long)MaxTtl.TotalSeconds / unitSeconds)
        {
            error = $"{SpiffeId.Printable(text)} is longer than the longest join-token lifetime, {MaxTtl.TotalDays} days";
            return false;
        }

        ttl = TimeSpan.FromSeconds(value * unitSeconds);
        error = null;
        return true;
    }

    public string Create(string node, TimeSpan ttl) => Create(node, ttl, DateTimeOffset.UtcNow);

    /// <summary>A token that lets <paramref name="node"/> join until <paramref name="now"/> + <paramref name="ttl"/>.</summary>
    public string Create(string node, TimeSpan ttl, DateTimeOffset now)
    {
        if (!MeshIdentities.IsNodeName(node))
        {
            throw new ArgumentException($"'{SpiffeId.Printable(node)}' is not a valid node name (1-63 characters of a-z, 0-9, '-', '.')", nameof(node));
        }

        if (ttl <= TimeSpan.Zero || ttl > MaxTtl)
        {
            throw new ArgumentOutOfRangeException(nameof(ttl), $"a join token's lifetime must be positive and at most {MaxTtl.TotalDays} days");
        }

        long expires = now.Add(ttl).ToUnixTimeSeconds();
        string id = Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(IdBytes));
        string payload = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"{Purpose}\n{node}\n{expires.ToString(CultureInfo.InvariantCulture)}\n{id}"));
        string signed = Prefix + payload;
        return signed + "." + Base64Url.EncodeToString(Mac(signed));
    }

    /// <summary>
    /// Accepts <paramref name="token"/> only if this CA made it, for joining, for <paramref name="node"/>, and it
    /// has not expired at <paramref name="now"/>. The MAC is checked first and in constant time, so nothing in a
    /// token is believed before it is known to be authentic.
    /// </summary>
    public bool TryVerify(string? token, string node, DateTimeOffset now, [NotNullWhen(true)] out JoinToken? verified, [NotNullWhen(false)] out string? reason)
    {
        verified = null;
        if (string.IsNullOrEmpty(token) || token.Length > MaxTokenLength || !token.StartsWith(Prefix, StringComparison.Ordinal))
        {
            reason = "join token is malformed";
            return false;
        }

        int dot = token.LastIndexOf('.');
        if (dot <= Prefix.Length)
        {
            reason = "join token is malformed";
            return false;
        }

        string signed = token[..dot];
        Span<byte> presentedMac = stackalloc byte[MacBytes + 3];
        if (Base64Url.DecodeFromChars(token.AsSpan(dot + 1), presentedMac, out int consumed, out int macLength) != System.Buffers.OperationStatus.Done
            || consumed != token.Length - dot - 1 || macLength != MacBytes)
        {
            reason = "join token is malformed";
            return false;
        }

        if (!CryptographicOperations.FixedTimeEquals(presentedMac[..MacBytes], Mac(signed)))
        {
            reason = "join token is not valid (tampered with, or made by another CA)";
            return false;
        }

        string[] fields;
        try
        {
            fields = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(signed.AsSpan(Prefix.Length))).Split('\n');
        }
        catch (FormatException)
        {
            reason = "join token is malformed";
            return false;
        }

        if (fields.Length != 4 || !long.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out long expires)
            || expires > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
        {
            reason = "join token is malformed";
            return false;
        }

        if (fields[0] != Purpose)
        {
            reason = $"join token is for '{SpiffeId.Printable(fields[0])}', not for joining";
            return false;
        }

        if (!string.Equals(fields[1], node, StringComparison.Ordinal))
        {
            reason = $"join token is for another node ('{SpiffeId.Printable(fields[1])}', not '{SpiffeId.Printable(node)}')";
            return false;
        }

        var expiresAt = DateTimeOffset.FromUnixTimeSeconds(expires);
        if (now >= expiresAt)
        {
            reason = $"join token expired at {expiresAt:u}";
            return false;
        }

        verified = new JoinToken(fields[1], expiresAt, fields[3]);
        reason = null;
        return true;
    }

    /// <summary>
    /// As <see cref="TryVerify"/>, and the token must not have been redeemed before; when it is accepted its id is
    /// recorded (on disk, before this returns) so it is never accepted again. A record that cannot be read or written
    /// refuses the join: the CA fails closed rather than let a token be used twice.
    /// </summary>
    public bool TryRedeem(string? token, string node, DateTimeOffset now, [NotNullWhen(true)] out JoinToken? redeemed, [NotNullWhen(false)] out string? reason)
    {
        if (!TryVerify(token, node, now, out redeemed, out reason))
        {
            return false;
        }

        lock (_redeemGate)
        {
            Dictionary<string, Redemption> ids;
            try
            {
                ids = _redeemedPath is null ? _redeemedInMemory : ReadRedeemed(_redeemedPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                reason = $"the CA cannot check whether the join token was used: {ex.Message}";
                redeemed = null;
                return false;
            }

            if (ids.TryGetValue(redeemed.Id, out Redemption? earlier))
            {
                reason = $"join token {redeemed.Id} was already used (by node {earlier.Node} at {earlier.At:u}); a token joins once: " +
                    "create a new one with 'nodemesh ca token create'";
                redeemed = null;
                return false;
            }

            // An expired token is refused for its expiry anyway: its record can go.
            foreach (string expired in ids.Where(e => e.Value.ExpiresAt <= now).Select(e => e.Key).ToList())
            {
                ids.Remove(expired);
            }

            ids[redeemed.Id] = new Redemption(redeemed.ExpiresAt, now, node);
            if (_redeemedPath is not null)
            {
                try
                {
                    WriteRedeemed(_redeemedPath, ids);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    reason = $"the CA cannot record the join token's use: {ex.Message}";
                    redeemed = null;
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>One line per redeemed token: <c>id expiry-unix-seconds redeemed-unix-seconds node</c>.</summary>
    private static Dictionary<string, Redemption> ReadRedeemed(string path)
    {
        var ids = new Dictionary<string, Redemption>(StringComparer.Ordinal);
        if (!File.Exists(path))
        {
            return ids;
        }

        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            string[] fields = line.Split(' ');
            if (line.Length == 0)
            {
                continue;
            }

            if (fields.Length != 4
                || !long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out long expires) || expires > DateTimeOffset.MaxValue.ToUnixTimeSeconds()
                || !long.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out long at) || at > DateTimeOffset.MaxValue.ToUnixTimeSeconds())
            {
                throw new InvalidDataException($"{path} line {number} is not 'id expiry redeemed node'");
            }

            ids[fields[0]] = new Redemption(DateTimeOffset.FromUnixTimeSeconds(expires), DateTimeOffset.FromUnixTimeSeconds(at), fields[3]);
        }

        return ids;
    }

    private static void WriteRedeemed(string path, Dictionary<string, Redemption> ids)
    {
        var text = new StringBuilder();
        foreach ((string id, Redemption r) in ids)
        {
            text.Append(CultureInfo.InvariantCulture, $"{id} {r.ExpiresAt.ToUnixTimeSeconds()} {r.At.ToUnixTimeSeconds()} {r.Node}\n");
        }

        CertificateAuthority.ReplacePrivateFile(path, text.ToString());
    }

    private sealed record Redemption(DateTimeOffset ExpiresAt, DateTimeOffset At, string Node);

    private byte[] Mac(string signed) => HMACSHA256.HashData(_secret, Encoding.UTF8.GetBytes(signed));
}
