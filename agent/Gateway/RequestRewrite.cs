using System.Globalization;

namespace NodeMesh.Gateway;

/// <summary>The Gateway API's path modifiers and redirect locations, as pure functions of the request's parts.</summary>
internal static class RequestRewrite
{
    /// <summary>
    /// The path after <paramref name="modifier"/>: the whole path replaced, or the prefix that
    /// <paramref name="match"/> matched replaced and the rest kept (/foo/bar with /foo → /xyz gives /xyz/bar; with
    /// /foo → / it gives /bar, and /foo itself gives /).
    /// </summary>
    public static string Path(string path, HttpPathModifierConfig modifier, HttpRouteMatchConfig match)
    {
        if (modifier.Type == PathModifierType.ReplaceFullPath)
        {
            return modifier.ReplaceFullPath.Length == 0 ? "/" : modifier.ReplaceFullPath;
        }

        // Validation allows ReplacePrefixMatch only on rules whose matches are all PathPrefix.
        string prefix = match.Path is { Type: PathMatchType.PathPrefix } p ? RouteTable.TrimPrefix(p.Value) : "";
        string rest = path.Length >= prefix.Length ? path[prefix.Length..] : "";
        string replacement = modifier.ReplacePrefixMatch;
        if (replacement.EndsWith('/') && rest.StartsWith('/'))
        {
            replacement = replacement[..^1];
        }

        string result = replacement + rest;
        return result.Length == 0 ? "/" : result[0] == '/' ? result : "/" + result;
    }

    /// <summary>
    /// The Location of a redirect: each part the redirect names replaced, the rest the request's; the port left out
    /// when it is the scheme's own, and a changed scheme without a port going to that scheme's well-known port.
    /// </summary>
    public static string RedirectLocation(RequestRedirectConfig redirect, string scheme, string host, int? port, string path, string queryString)
    {
        string toScheme = redirect.Scheme.Length > 0 ? redirect.Scheme.ToLowerInvariant() : scheme;
        string toHost = redirect.Hostname.Length > 0 ? redirect.Hostname : host;
        int toPort = redirect.Port != 0 ? redirect.Port
            : redirect.Scheme.Length > 0 && !string.Equals(toScheme, scheme, StringComparison.OrdinalIgnoreCase) ? WellKnownPort(toScheme)
            : port ?? WellKnownPort(toScheme);
        string authority = toHost.Contains(':', StringComparison.Ordinal) && !toHost.StartsWith('[') ? "[" + toHost + "]" : toHost;
        string portPart = toPort == WellKnownPort(toScheme) ? "" : ":" + toPort.ToString(CultureInfo.InvariantCulture);
        return $"{toScheme}://{authority}{portPart}{path}{queryString}";
    }

    public static int WellKnownPort(string scheme) => string.Equals(scheme, "https", StringComparison.OrdinalIgnoreCase) ? 443 : 80;

    /// <summary>The sum of the backends' weights: 0 when none may take a request.</summary>
    public static int TotalWeight(IReadOnlyList<BackendRefConfig> backends)
    {
        long total = 0;
        foreach (BackendRefConfig backend in backends)
        {
            total += Math.Max(0, backend.Weight);
        }

        return (int)Math.Min(total, int.MaxValue);
    }
}
