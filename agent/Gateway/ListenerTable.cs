using System.Net;

namespace NodeMesh.Gateway;

/// <summary>
/// Which listener a request came in on. Listeners that share an address and port (Http or H2c ones with
/// different host names: the Gateway API's listener isolation) are one socket; among them the request's host
/// picks the most specific — an exact name, then the longest wildcard, then the one without a host name — and a
/// host none of them names belongs to no listener (404). Pure: built from the validated listeners.
/// </summary>
internal sealed class ListenerTable
{
    private readonly Dictionary<int, Group[]> _byPort;

    public ListenerTable(IReadOnlyList<GatewayListenerConfig> listeners) =>
        _byPort = listeners.GroupBy(l => (l.Address, l.Port))
            .Select(g => new Group(IPAddress.Parse(g.Key.Address), g.Key.Port, [.. g]))
            .GroupBy(g => g.Port)
            .ToDictionary(g => g.Key, g => g.ToArray());

    /// <summary>The listeners that share each address and port, in configuration order: one socket each.</summary>
    public static IEnumerable<IReadOnlyList<GatewayListenerConfig>> Sockets(IReadOnlyList<GatewayListenerConfig> listeners) =>
        listeners.GroupBy(l => (l.Address, l.Port)).Select(g => (IReadOnlyList<GatewayListenerConfig>)[.. g]);

    /// <summary>The listener of a request to <paramref name="host"/> on a connection to <paramref name="local"/>:<paramref name="port"/>; null: none takes that host.</summary>
    public GatewayListenerConfig? Resolve(IPAddress? local, int port, string host)
    {
        if (!_byPort.TryGetValue(port, out Group[]? groups))
        {
            return null;
        }

        Group? group = groups.Length == 1 ? groups[0] : Array.Find(groups, g => g.Serves(local));
        if (group is null)
        {
            return null;
        }

        GatewayListenerConfig? best = null;
        int bestScore = -1;
        foreach (GatewayListenerConfig listener in group.Listeners)
        {
            int score = listener.Hostname.Length == 0 ? 0 : RouteTable.HostScore(listener.Hostname, host);
            if (score > bestScore)
            {
                best = listener;
                bestScore = score;
            }
        }

        return best;
    }

    /// <summary>
    /// Whether two host names (exact or <c>*.suffix</c>) have a name in common: a route's host names and its
    /// listener's must, or the route can never take a request there.
    /// </summary>
    public static bool Intersect(string a, string b)
    {
        bool wildA = a.StartsWith("*.", StringComparison.Ordinal), wildB = b.StartsWith("*.", StringComparison.Ordinal);
        if (!wildA && !wildB)
        {
            return string.Equals(a, b, StringComparison.OrdinalIgnoreCase);
        }

        // A wildcard covers every name, exact or wildcard, that ends in its suffix and is longer than it.
        (string wide, string other) = !wildA || (wildB && b.Length < a.Length) ? (b, a) : (a, b);
        ReadOnlySpan<char> suffix = wide.AsSpan(1);
        return string.Equals(wide, other, StringComparison.OrdinalIgnoreCase)
            || (other.Length > suffix.Length && other.AsSpan().EndsWith(suffix, StringComparison.OrdinalIgnoreCase));
    }

    private sealed record Group(IPAddress Address, int Port, GatewayListenerConfig[] Listeners)
    {
        public bool Serves(IPAddress? local) =>
            Address.Equals(IPAddress.Any) || Address.Equals(IPAddress.IPv6Any)
            || (local is not null && (local.IsIPv4MappedToIPv6 ? local.MapToIPv4() : local).Equals(Address));
    }
}
