using Microsoft.AspNetCore.Http;

namespace NodeMesh.Gateway;

/// <summary>
/// The routes in force: a route table and each rule's plan, built together from one configuration and swapped as
/// one reference, so a request sees either the old routes or the new ones, never a mix, and a request in flight
/// keeps the plan it started with.
/// </summary>
internal sealed class GatewayRoutes
{
    private Snapshot _current;

    public GatewayRoutes(GatewayConfig gateway) => _current = Build(All(gateway));

    /// <summary>Swaps in new routes (already validated); the old rules' rate limiters are let go once no request can still be starting on them.</summary>
    public void Replace(GatewayConfig gateway)
    {
        Snapshot old = Interlocked.Exchange(ref _current, Build(All(gateway)));
        _ = DisposeLaterAsync(old);
    }

    private static async Task DisposeLaterAsync(Snapshot old)
    {
        // A request takes its rule's permits right after matching it: ten seconds is ample for one that matched just before.
        await Task.Delay(TimeSpan.FromSeconds(10));
        foreach (RulePlan plan in old.Plans.Values)
        {
            plan.RateLimits?.Dispose();
        }
    }

    /// <summary>The HTTP routes and the gRPC routes as HTTP routes, ranked together.</summary>
    private static IReadOnlyList<HttpRouteConfig> All(GatewayConfig gateway) => [.. gateway.HttpRoutes, .. GrpcRoutes.AsHttpRoutes(gateway.GrpcRoutes)];

    public int Count => Volatile.Read(ref _current).Routes;

    /// <summary>The plan of the rule that takes the request; null: no route matches.</summary>
    public RulePlan? Match(GatewayListenerConfig listener, string host, string path, string method, IHeaderDictionary headers, IQueryCollection query, out HttpRouteMatchConfig? match)
    {
        Snapshot snapshot = Volatile.Read(ref _current);
        RouteMatch? found = snapshot.Table.Match(listener.Name, host, path, method, headers, query, listener.Hostname);
        match = found?.Match;
        return found is null ? null : snapshot.Plans[found.Rule];
    }

    private static Snapshot Build(IReadOnlyList<HttpRouteConfig> routes)
    {
        var plans = new Dictionary<HttpRouteRuleConfig, RulePlan>(ReferenceEqualityComparer.Instance);
        foreach (HttpRouteConfig route in routes)
        {
            for (int i = 0; i < route.Rules.Count; i++)
            {
                plans[route.Rules[i]] = RulePlan.Of(route, route.Rules[i], i);
            }
        }

        return new Snapshot(RouteTable.Build(routes), plans, routes.Count);
    }

    private sealed record Snapshot(RouteTable Table, Dictionary<HttpRouteRuleConfig, RulePlan> Plans, int Routes);
}
