using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;

namespace NodeMesh.Gateway;

/// <summary>The rule that takes a request, and which of its matches did (a rewrite of the matched prefix needs it).</summary>
internal sealed record RouteMatch(HttpRouteConfig Route, HttpRouteRuleConfig Rule, int RuleIndex, HttpRouteMatchConfig Match);

/// <summary>
/// Every match of every rule of every route, in the Gateway API's order of precedence, so the first that fits a
/// request is the one the specification says takes it: the most specific host name first (an exact one, then the
/// longest wildcard, then routes for any host), then an exact path, a regular expression, the longest prefix, then
/// a method match, the most header matches, the most query matches, and on a tie the route and rule that come first
/// in the configuration (the Gateway API's "oldest route"). Pure: built from a validated snapshot, read-only after.
/// </summary>
internal sealed class RouteTable
{
    private static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(100);
    private static readonly HttpRouteMatchConfig Everything = new();

    private readonly Entry[] _entries;

    private RouteTable(Entry[] entries) => _entries = entries;

    public int Count => _entries.Length;

    public static RouteTable Build(IReadOnlyList<HttpRouteConfig> routes)
    {
        var entries = new List<Entry>();
        for (int r = 0; r < routes.Count; r++)
        {
            HttpRouteConfig route = routes[r];
            var hosts = route.Hostnames.Select(h => h.ToLowerInvariant()).ToArray();
            var listeners = route.Listeners.Count == 0 ? null : new HashSet<string>(route.Listeners, StringComparer.Ordinal);
            for (int i = 0; i < route.Rules.Count; i++)
            {
                HttpRouteRuleConfig rule = route.Rules[i];
                IReadOnlyList<HttpRouteMatchConfig> matches = rule.Matches.Count == 0 ? [Everything] : rule.Matches;
                foreach (HttpRouteMatchConfig match in matches)
                {
                    entries.Add(new Entry(new RouteMatch(route, rule, i, match), hosts, listeners, Compile(match), r));
                }
            }
        }

        // A stable sort: equal keys keep the configuration's order (route, then rule, then match).
        return new RouteTable([.. entries.OrderBy(e => e, EntryPrecedence.Instance)]);
    }

    /// <summary>The rule for a request; null: no route takes it (404).</summary>
    /// <param name="listenerHostname">The listener's host name: a route without host names of its own takes it (the Gateway API's intersection).</param>
    public RouteMatch? Match(string listener, string host, string path, string method, IHeaderDictionary headers, IQueryCollection query, string listenerHostname = "")
    {
        int listenerScore = listenerHostname.Length == 0 ? 0 : HostScore(listenerHostname, host);
        // Host specificity outranks everything else, so take the best host score over the entries that fit, the
        // first entry with it winning (the list is in path/method/header order within any one score).
        RouteMatch? best = null;
        int bestScore = -1;
        foreach (Entry entry in _entries)
        {
            if (entry.Listeners is { } only && !only.Contains(listener))
            {
                continue;
            }

            int score = entry.Hosts.Length == 0 ? listenerScore : HostScore(entry.Hosts, host);
            if (score <= bestScore || !entry.Fits(path, method, headers, query))
            {
                continue;
            }

            best = entry.Result;
            bestScore = score;
        }

        return best;
    }

    /// <summary>
    /// How specifically <paramref name="hosts"/> name <paramref name="host"/>: -1 not at all, 0 a route for any host,
    /// the wildcard's length for a wildcard, and above every wildcard an exact name.
    /// </summary>
    internal static int HostScore(string[] hosts, string host)
    {
        if (hosts.Length == 0)
        {
            return 0;
        }

        int best = -1;
        foreach (string pattern in hosts)
        {
            best = Math.Max(best, HostScore(pattern, host));
        }

        return best;
    }

    /// <summary>How specifically one host name (exact or <c>*.suffix</c>) names <paramref name="host"/>: -1 not at all, else as above.</summary>
    internal static int HostScore(string pattern, string host)
    {
        if (pattern.StartsWith("*.", StringComparison.Ordinal))
        {
            // *.example.com: one or more labels before .example.com, never example.com itself.
            ReadOnlySpan<char> suffix = pattern.AsSpan(1);
            return host.Length > suffix.Length && host.AsSpan().EndsWith(suffix, StringComparison.OrdinalIgnoreCase) ? pattern.Length : -1;
        }

        return string.Equals(pattern, host, StringComparison.OrdinalIgnoreCase) ? int.MaxValue : -1;
    }

    /// <summary>Gateway API PathPrefix: whole segments, a trailing slash in the prefix ignored.</summary>
    internal static bool PrefixMatches(string prefix, string path)
    {
        string trimmed = TrimPrefix(prefix);
        if (trimmed.Length == 0)
        {
            return true;
        }

        return path.StartsWith(trimmed, StringComparison.Ordinal) && (path.Length == trimmed.Length || path[trimmed.Length] == '/');
    }

    /// <summary>"/api/" and "/api" are the same prefix; "/" is the empty one.</summary>
    internal static string TrimPrefix(string prefix) => prefix.TrimEnd('/');

    /// <summary>A regular expression anchored to the whole value; linear in the input, so no request can make it backtrack.</summary>
    internal static Regex CompileRegex(string pattern) =>
        new("^(?:" + pattern + ")$", RegexOptions.CultureInvariant | RegexOptions.NonBacktracking, RegexTimeout);

    private static CompiledMatch Compile(HttpRouteMatchConfig match) => new(
        match.Path is { Type: PathMatchType.RegularExpression } p ? CompileRegex(p.Value) : null,
        [.. match.Headers.Select(h => h.Type == ValueMatchType.RegularExpression ? CompileRegex(h.Value) : null)],
        [.. match.QueryParams.Select(q => q.Type == ValueMatchType.RegularExpression ? CompileRegex(q.Value) : null)]);

    private sealed record CompiledMatch(Regex? Path, Regex?[] Headers, Regex?[] Query);

    private sealed record Entry(RouteMatch Result, string[] Hosts, HashSet<string>? Listeners, CompiledMatch Compiled, int RouteIndex)
    {
        public bool Fits(string path, string method, IHeaderDictionary headers, IQueryCollection query)
        {
            HttpRouteMatchConfig match = Result.Match;
            bool pathFits = match.Path switch
            {
                null => true,
                { Type: PathMatchType.Exact } p => string.Equals(p.Value, path, StringComparison.Ordinal),
                { Type: PathMatchType.PathPrefix } p => PrefixMatches(p.Value, path),
                _ => Compiled.Path!.IsMatch(path),
            };
            if (!pathFits || (match.Method.Length > 0 && !string.Equals(match.Method, method, StringComparison.Ordinal)))
            {
                return false;
            }

            for (int i = 0; i < match.Headers.Count; i++)
            {
                // Several values of one header are matched as the comma-joined list (RFC 9110 5.3).
                string? value = headers.TryGetValue(match.Headers[i].Name, out var values) && values.Count > 0 ? values.ToString() : null;
                if (!ValueFits(match.Headers[i], Compiled.Headers[i], value))
                {
                    return false;
                }
            }

            for (int i = 0; i < match.QueryParams.Count; i++)
            {
                // Names are case-sensitive (ASP.NET's collection is not: its key keeps the first spelling seen); the
                // first value of a repeated parameter, as the Gateway API allows and Envoy does.
                string? value = query.TryGetValue(match.QueryParams[i].Name, out var values) && values.Count > 0 && HasKey(query, match.QueryParams[i].Name) ? values[0] : null;
                if (!ValueFits(match.QueryParams[i], Compiled.Query[i], value))
                {
                    return false;
                }
            }

            return true;
        }

        private static bool HasKey(IQueryCollection query, string name)
        {
            foreach (string key in query.Keys)
            {
                if (string.Equals(key, name, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }

        private static bool ValueFits(HttpValueMatchConfig match, Regex? regex, string? value) =>
            value is not null && (regex is null ? string.Equals(match.Value, value, StringComparison.Ordinal) : regex.IsMatch(value));
    }

    /// <summary>The Gateway API's precedence among matches for one host score (earlier is stronger).</summary>
    private sealed class EntryPrecedence : IComparer<Entry>
    {
        public static readonly EntryPrecedence Instance = new();

        public int Compare(Entry? x, Entry? y)
        {
            HttpRouteMatchConfig a = x!.Result.Match, b = y!.Result.Match;
            int c = PathRank(a).CompareTo(PathRank(b));
            if (c != 0)
            {
                return c;
            }

            c = PathLength(b).CompareTo(PathLength(a));
            if (c != 0)
            {
                return c;
            }

            c = (b.Method.Length > 0).CompareTo(a.Method.Length > 0);
            if (c != 0)
            {
                return c;
            }

            c = b.Headers.Count.CompareTo(a.Headers.Count);
            return c != 0 ? c : b.QueryParams.Count.CompareTo(a.QueryParams.Count);
        }

        private static int PathRank(HttpRouteMatchConfig m) => m.Path?.Type switch
        {
            PathMatchType.Exact => 0,
            PathMatchType.RegularExpression => 1,
            _ => 2,
        };

        private static int PathLength(HttpRouteMatchConfig m) => m.Path is { Type: PathMatchType.PathPrefix } p ? TrimPrefix(p.Value).Length : m.Path?.Value.Length ?? 0;
    }
}
