using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using NodeMesh.Config;
using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>Which rule takes a request: the Gateway API's matching and precedence, from routes written as an operator writes them.</summary>
public class RouteTableTests
{
    private const string Head = """
        {
          "node": { "name": "node1", "address": "10.231.0.1" },
          "trustDomain": "cluster.local",
          "ca": { "dir": "/var/lib/nodemesh/ca" },
          "gateway": {
            "listeners": [ { "name": "web", "port": 8080 }, { "name": "internal", "port": 8081 } ],
            "httpRoutes": ROUTES
          }
        }
        """;

    internal static AgentConfig Config(string routes) => ConfigLoader.Parse(Head.Replace("ROUTES", routes, StringComparison.Ordinal), "test.json");

    private static RouteTable Table(string routes) => RouteTable.Build(Config(routes).Gateway.HttpRoutes);

    private static string? Take(RouteTable table, string path, string host = "shop.example.com", string method = "GET",
        string listener = "web", (string, string)[]? headers = null, string query = "")
    {
        var h = new HeaderDictionary();
        foreach ((string name, string value) in headers ?? [])
        {
            h.Append(name, value);
        }

        var q = new QueryCollection(Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(query));
        RouteMatch? match = table.Match(listener, host, path, method, h, q);
        return match is null ? null : $"{match.Route.Name}/{(match.Rule.Name.Length > 0 ? match.Rule.Name : match.RuleIndex.ToString(System.Globalization.CultureInfo.InvariantCulture))}";
    }

    private static string Backend(string name) => $$"""[ { "name": "{{name}}", "port": 80 } ]""";

    [Fact]
    public void PathPrefix_MatchesWholeSegments_AndTheLongestPrefixWins_WhateverTheOrder()
    {
        RouteTable table = Table($$"""
            [ { "name": "r", "rules": [
                { "name": "root", "backendRefs": {{Backend("a")}} },
                { "name": "api", "matches": [ { "path": { "type": "PathPrefix", "value": "/api/" } } ], "backendRefs": {{Backend("b")}} },
                { "name": "v2", "matches": [ { "path": { "type": "PathPrefix", "value": "/api/v2" } } ], "backendRefs": {{Backend("c")}} } ] } ]
            """);
        Assert.Equal("r/api", Take(table, "/api"));
        Assert.Equal("r/api", Take(table, "/api/"));
        Assert.Equal("r/api", Take(table, "/api/x"));
        Assert.Equal("r/root", Take(table, "/apix"));
        Assert.Equal("r/v2", Take(table, "/api/v2/orders"));
        Assert.Equal("r/api", Take(table, "/api/v20"));
        Assert.Equal("r/root", Take(table, "/"));
    }

    [Fact]
    public void ExactPath_OutranksPrefix_AndRegex_IsAnchoredToTheWholePath()
    {
        RouteTable table = Table($$"""
            [ { "name": "r", "rules": [
                { "name": "prefix", "matches": [ { "path": { "type": "PathPrefix", "value": "/login" } } ], "backendRefs": {{Backend("a")}} },
                { "name": "exact", "matches": [ { "path": { "type": "Exact", "value": "/login" } } ], "backendRefs": {{Backend("b")}} },
                { "name": "regex", "matches": [ { "path": { "type": "RegularExpression", "value": "/items/[0-9]+" } } ], "backendRefs": {{Backend("c")}} } ] } ]
            """);
        Assert.Equal("r/exact", Take(table, "/login"));
        Assert.Equal("r/prefix", Take(table, "/login/sso"));
        Assert.Equal("r/regex", Take(table, "/items/42"));
        Assert.Null(Take(table, "/items/42/x"));
        Assert.Null(Take(table, "/x/items/42"));
        Assert.Null(Take(table, "/"));
    }

    [Fact]
    public void Hostnames_ExactBeatsWildcard_LongerWildcardBeatsShorter_AndAnyHostComesLast()
    {
        RouteTable table = Table($$"""
            [ { "name": "any", "rules": [ { "matches": [ { "path": { "type": "PathPrefix", "value": "/deep/path" } } ], "backendRefs": {{Backend("a")}} } ] },
              { "name": "wild", "hostnames": [ "*.example.com" ], "rules": [ { "backendRefs": {{Backend("b")}} } ] },
              { "name": "wilder", "hostnames": [ "*.eu.example.com" ], "rules": [ { "backendRefs": {{Backend("c")}} } ] },
              { "name": "exact", "hostnames": [ "shop.example.com" ], "rules": [ { "backendRefs": {{Backend("d")}} } ] } ]
            """);
        // Host specificity comes before path specificity: the catch-all host's longer path does not win.
        Assert.Equal("exact/0", Take(table, "/deep/path", host: "shop.example.com"));
        Assert.Equal("exact/0", Take(table, "/", host: "SHOP.Example.com"));
        Assert.Equal("wilder/0", Take(table, "/", host: "a.eu.example.com"));
        Assert.Equal("wild/0", Take(table, "/", host: "a.b.example.com"));
        // A wildcard never matches the bare domain.
        Assert.Equal("any/0", Take(table, "/deep/path", host: "example.com"));
        Assert.Null(Take(table, "/", host: "example.com"));
        Assert.Null(Take(table, "/", host: "other.org"));
    }

    [Fact]
    public void Method_Headers_AndQuery_AllMustHold_AndMoreConditionsOutrankFewer()
    {
        RouteTable table = Table($$"""
            [ { "name": "r", "rules": [
                { "name": "plain", "backendRefs": {{Backend("a")}} },
                { "name": "post", "matches": [ { "method": "POST" } ], "backendRefs": {{Backend("b")}} },
                { "name": "canary", "matches": [ { "headers": [ { "name": "x-canary", "value": "yes" } ] } ], "backendRefs": {{Backend("c")}} },
                { "name": "canary-eu", "matches": [ { "headers": [ { "name": "X-Canary", "value": "yes" }, { "name": "x-region", "type": "RegularExpression", "value": "eu-.*" } ] } ], "backendRefs": {{Backend("d")}} },
                { "name": "beta", "matches": [ { "queryParams": [ { "name": "beta", "value": "1" } ] } ], "backendRefs": {{Backend("e")}} } ] } ]
            """);
        Assert.Equal("r/plain", Take(table, "/"));
        Assert.Equal("r/post", Take(table, "/", method: "POST"));
        Assert.Equal("r/plain", Take(table, "/", method: "post"));
        Assert.Equal("r/canary", Take(table, "/", headers: [("X-CANARY", "yes")]));
        Assert.Equal("r/plain", Take(table, "/", headers: [("x-canary", "YES")]));
        Assert.Equal("r/canary-eu", Take(table, "/", headers: [("x-canary", "yes"), ("x-region", "eu-west")]));
        Assert.Equal("r/canary", Take(table, "/", headers: [("x-canary", "yes"), ("x-region", "us-east")]));
        Assert.Equal("r/beta", Take(table, "/", query: "?beta=1"));
        Assert.Equal("r/plain", Take(table, "/", query: "?Beta=1"));
        // A method match outranks header matches (Gateway API precedence: method before headers).
        Assert.Equal("r/post", Take(table, "/", method: "POST", headers: [("x-canary", "yes")]));
    }

    [Fact]
    public void Ties_GoToTheRouteAndRuleThatComeFirst_AndListenersLimitARoute()
    {
        RouteTable table = Table($$"""
            [ { "name": "first", "rules": [ { "name": "a", "backendRefs": {{Backend("a")}} }, { "name": "b", "backendRefs": {{Backend("b")}} } ] },
              { "name": "second", "rules": [ { "backendRefs": {{Backend("c")}} } ] },
              { "name": "inside", "listeners": [ "internal" ], "rules": [ { "matches": [ { "path": { "type": "PathPrefix", "value": "/admin" } } ], "backendRefs": {{Backend("d")}} } ] } ]
            """);
        Assert.Equal("first/a", Take(table, "/x"));
        Assert.Equal("first/a", Take(table, "/admin"));
        Assert.Equal("inside/0", Take(table, "/admin", listener: "internal"));
    }

    [Fact]
    public void ARegex_IsLinearTime_SoAHostileInputDoesNotStallMatching()
    {
        // (a+)+$ backtracks exponentially on "aaaa…!" in a backtracking engine.
        RouteTable table = Table($$"""
            [ { "name": "r", "rules": [ { "matches": [ { "path": { "type": "RegularExpression", "value": "/(a+)+" } } ], "backendRefs": {{Backend("a")}} } ] } ]
            """);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.Null(Take(table, "/" + new string('a', 5000) + "!"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"{watch.Elapsed}");
    }
}
