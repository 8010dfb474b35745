namespace NodeMesh.Contracts;

/// <summary>
/// Kubernetes' rules for object names (RFC 1123), checked by the CNI shim and again by the agent, which trusts no
/// caller: a name that passes cannot carry a space, a quote, a ';' or a '$(', whatever it later reaches.
/// </summary>
public static class KubernetesNames
{
    /// <summary>A DNS label (namespaces, services): 1-63 of a-z, 0-9, '-', starting and ending with a letter or digit.</summary>
    public static bool IsLabel(string? value) => IsDnsName(value, 63, allowDots: false);

    /// <summary>A DNS subdomain (pods, service accounts, nodes): up to 253, labels joined by '.'.</summary>
    public static bool IsSubdomain(string? value) => IsDnsName(value, 253, allowDots: true);

    /// <summary>A uid as the API server makes them (a UUID): hex digits and '-', at most 64.</summary>
    public static bool IsUid(string? value) =>
        value is { Length: > 0 and <= 64 } && value.All(ch => char.IsAsciiHexDigit(ch) || ch == '-');

    private static bool IsDnsName(string? value, int max, bool allowDots)
    {
        if (value is null || value.Length == 0 || value.Length > max)
        {
            return false;
        }

        char previous = '.';
        foreach (char ch in value)
        {
            bool alnum = char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch);
            if (ch == '.' ? !allowDots || previous is '.' or '-' : ch == '-' ? previous == '.' : !alnum)
            {
                return false;
            }

            previous = ch;
        }

        return previous is not ('-' or '.');
    }
}
