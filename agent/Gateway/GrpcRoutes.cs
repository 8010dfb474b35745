using System.Text.RegularExpressions;

namespace NodeMesh.Gateway;

/// <summary>
/// GRPCRoutes as HTTP routes: a gRPC call is a POST to <c>/package.Service/Method</c>, so a method match is a path
/// match (exact for a service and method, a prefix for a service alone, a regular expression for
/// RegularExpression matches) on POST, and the rest (hostnames, headers, filters, backends) is the same. The
/// route table then ranks them with the HTTP routes by the Gateway API's rules.
/// </summary>
internal static class GrpcRoutes
{
    public static IReadOnlyList<HttpRouteConfig> AsHttpRoutes(IReadOnlyList<GrpcRouteConfig> routes) =>
        [.. routes.Select(r => new HttpRouteConfig
        {
            Name = r.Name,
            Hostnames = r.Hostnames,
            Listeners = r.Listeners,
            Rules = [.. r.Rules.Select(rule => new HttpRouteRuleConfig
            {
                Name = rule.Name,
                Matches = rule.Matches.Count == 0 ? [new HttpRouteMatchConfig { Method = "POST" }] : [.. rule.Matches.Select(Match)],
                Filters = rule.Filters,
                BackendRefs = rule.BackendRefs,
            })],
        })];

    /// <summary>The HTTP match of a GRPCRoute match.</summary>
    public static HttpRouteMatchConfig Match(GrpcRouteMatchConfig match) => new()
    {
        Method = "POST",
        Headers = match.Headers,
        Path = match.Method switch
        {
            null or { Service: "", Method: "" } => null,
            { Type: ValueMatchType.Exact, Service.Length: > 0, Method.Length: > 0 } m => new HttpPathMatchConfig { Type = PathMatchType.Exact, Value = $"/{m.Service}/{m.Method}" },
            { Type: ValueMatchType.Exact, Method.Length: 0 } m => new HttpPathMatchConfig { Type = PathMatchType.PathPrefix, Value = "/" + m.Service },
            { Type: ValueMatchType.Exact } m => new HttpPathMatchConfig { Type = PathMatchType.RegularExpression, Value = "/[^/]+/" + Regex.Escape(m.Method) },
            { } m => new HttpPathMatchConfig
            {
                Type = PathMatchType.RegularExpression,
                Value = $"/{(m.Service.Length > 0 ? m.Service : "[^/]+")}/{(m.Method.Length > 0 ? m.Method : "[^/]+")}",
            },
        },
    };
}
