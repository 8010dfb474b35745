using System.Diagnostics.CodeAnalysis;

namespace NodeMesh.Identity;

/// <summary>
/// A workload identity <c>spiffe://&lt;trust-domain&gt;/ns/&lt;namespace&gt;/sa/&lt;service-account&gt;</c>.
/// Parsing is strict and comparison is ordinal: <c>ns/a.b</c> is never <c>ns/a</c>, and case is never folded.
/// </summary>
internal sealed record SpiffeId(string TrustDomain, string Namespace, string ServiceAccount)
{
    private const string Scheme = "spiffe://";

    public string Uri { get; } = $"{Scheme}{TrustDomain}/ns/{Namespace}/sa/{ServiceAccount}";

    public override string ToString() => Uri;

    public static SpiffeId Parse(string value) =>
        TryParse(value, out SpiffeId? id, out string? error) ? id : throw new FormatException(error);

    public static bool TryParse(string? value, [NotNullWhen(true)] out SpiffeId? id, [NotNullWhen(false)] out string? error)
    {
        id = null;
        if (string.IsNullOrEmpty(value))
        {
            error = "SPIFFE id is empty";
            return false;
        }

        if (value.Length > 2048)
        {
            error = "SPIFFE id is longer than 2048 characters";
            return false;
        }

        if (!value.StartsWith(Scheme, StringComparison.Ordinal))
        {
            error = $"'{Printable(value)}' is not a SPIFFE id: it must start with 'spiffe://'";
            return false;
        }

        string[] parts = value[Scheme.Length..].Split('/');
        if (parts.Length != 5 || parts[1] != "ns" || parts[3] != "sa")
        {
            error = $"'{Printable(value)}' must have the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>";
            return false;
        }

        if (!IsTrustDomain(parts[0]))
        {
            error = $"'{Printable(value)}': trust domain '{Printable(parts[0])}' must be 1-255 characters of a-z, 0-9, '.', '-', '_'";
            return false;
        }

        if (!IsDnsLabel(parts[2], 63, allowDots: false))
        {
            error = $"'{Printable(value)}': namespace '{Printable(parts[2])}' must be a DNS label (a-z, 0-9, '-', at most 63, starting and ending alphanumeric)";
            return false;
        }

        if (!IsDnsLabel(parts[4], 253, allowDots: true))
        {
            error = $"'{Printable(value)}': service account '{Printable(parts[4])}' must be a DNS subdomain (a-z, 0-9, '-', '.', at most 253)";
            return false;
        }

        id = new SpiffeId(parts[0], parts[2], parts[4]);
        error = null;
        return true;
    }

    public static bool IsTrustDomain(string value)
    {
        if (value.Length is 0 or > 255)
        {
            return false;
        }

        foreach (char c in value)
        {
            if (!(c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '.' or '-' or '_'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsDnsLabel(string value, int maxLength, bool allowDots)
    {
        if (value.Length == 0 || value.Length > maxLength)
        {
            return false;
        }

        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            bool alnum = c is (>= 'a' and <= 'z') or (>= '0' and <= '9');
            bool inner = c == '-' || (allowDots && c == '.');
            if (!alnum && !(inner && i > 0 && i < value.Length - 1))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Keeps hostile input readable in error messages (no control characters, bounded length).</summary>
    internal static string Printable(string value) => Contracts.Printable.Of(value);
}
