using System.Net;
using Microsoft.AspNetCore.Http;
using NodeMesh.Config;
using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>
/// Listener isolation (the Gateway API's GatewayHTTPListenerIsolation): listeners on one port told apart by host
/// name; a request belongs to the most specific listener naming its host, and only that listener's routes take it.
/// </summary>
public class ListenerTableTests
{
    private const string Gateway = """
        {
          "node": { "name": "node1", "address": "10.231.0.1" },
          "trustDomain": "cluster.local",
          "ca": { "dir": "/var/lib/nodemesh/ca" },
          "gateway": {
            "listeners": [
              { "name": "empty", "port": 80 },
              { "name": "wildcard", "port": 80, "hostname": "*.example.com" },
              { "name": "foo-wildcard", "port": 80, "hostname": "*.foo.example.com" },
              { "name": "abc-foo", "port": 80, "hostname": "abc.foo.example.com" },
              { "name": "other", "address": "10.231.0.1", "port": 8080 }
            ],
            "httpRoutes": ROUTES
          }
        }
        """;

    private const string IsolatedRoutes = """
        [
          { "name": "r-empty", "listeners": [ "empty" ], "rules": [ { "backendRefs": [ { "name": "a", "port": 80 } ] } ] },
          { "name": "r-wildcard", "listeners": [ "wildcard" ], "rules": [ { "backendRefs": [ { "name": "b", "port": 80 } ] } ] },
          { "name": "r-foo-wildcard", "listeners": [ "foo-wildcard" ], "rules": [ { "backendRefs": [ { "name": "c", "port": 80 } ] } ] },
          { "name": "r-abc-foo", "listeners": [ "abc-foo" ], "rules": [ { "backendRefs": [ { "name": "d", "port": 80 } ] } ] }
        ]
        """;

    private const string RankedRoutes = """
        [
          { "name": "any", "listeners": [ "wildcard" ], "rules": [ { "backendRefs": [ { "name": "a", "port": 80 } ] } ] },
          { "name": "wild", "hostnames": [ "*.example.com" ], "listeners": [ "wildcard" ], "rules": [ { "backendRefs": [ { "name": "b", "port": 80 } ] } ] },
          { "name": "exact", "hostnames": [ "shop.example.com" ], "listeners": [ "wildcard" ], "rules": [ { "backendRefs": [ { "name": "c", "port": 80 } ] } ] }
        ]
        """;

    private static GatewayConfig Parse(string routes) => ConfigLoader.Parse(Gateway.Replace("ROUTES", routes, StringComparison.Ordinal), "test.json").Gateway;

    private static readonly GatewayConfig Config = Parse(IsolatedRoutes);

    [Theory]
    [InlineData("bar.com", "empty", "r-empty")]
    [InlineData("example.com", "empty", "r-empty")]
    [InlineData("bar.example.com", "wildcard", "r-wildcard")]
    [InlineData("bar.foo.example.com", "foo-wildcard", "r-foo-wildcard")]
    [InlineData("ABC.foo.example.com", "abc-foo", "r-abc-foo")]
    [InlineData("abc.foo.example.com", "abc-foo", "r-abc-foo")]
    public void TheMostSpecificListener_TakesTheRequest_AndOnlyItsRoutes(string host, string listener, string route)
    {
        GatewayListenerConfig? chosen = new ListenerTable(Config.Listeners).Resolve(IPAddress.Parse("10.231.0.1"), 80, host);
        Assert.Equal(listener, chosen?.Name);
        var routes = new GatewayRoutes(Config);
        RulePlan? plan = routes.Match(chosen!, host, "/", "GET", new HeaderDictionary(), new QueryCollection(), out _);
        Assert.Equal(route, plan?.RouteName);
    }

    [Fact]
    public void WithoutAListenerForAnyHost_AnUnnamedHostHasNone()
    {
        var table = new ListenerTable([.. Config.Listeners.Where(l => l.Name != "empty")]);
        Assert.Null(table.Resolve(IPAddress.Parse("10.231.0.1"), 80, "bar.com"));
        Assert.Null(table.Resolve(IPAddress.Parse("10.231.0.1"), 80, "example.com"));
        Assert.Equal("wildcard", table.Resolve(IPAddress.Parse("10.231.0.1"), 80, "x.example.com")?.Name);
        Assert.Equal("other", table.Resolve(IPAddress.Parse("::ffff:10.231.0.1"), 8080, "x.example.com")?.Name);
        Assert.Null(table.Resolve(IPAddress.Parse("10.231.0.1"), 9999, "x.example.com"));
    }

    [Fact]
    public void ARouteWithoutHostNames_TakesItsListenersHostName()
    {
        // The route for any host, on the wildcard listener, ranks as *.example.com: a route for *.example.com on
        // the same listener that comes later does not outrank it, and an exact name does.
        RouteTable table = RouteTable.Build(Parse(RankedRoutes).HttpRoutes);
        Assert.Equal("any", table.Match("wildcard", "x.example.com", "/", "GET", new HeaderDictionary(), new QueryCollection(), "*.example.com")?.Route.Name);
        Assert.Equal("exact", table.Match("wildcard", "shop.example.com", "/", "GET", new HeaderDictionary(), new QueryCollection(), "*.example.com")?.Route.Name);
    }

    [Theory]
    [InlineData("*.example.com", "foo.example.com", true)]
    [InlineData("foo.example.com", "*.example.com", true)]
    [InlineData("*.example.com", "*.foo.example.com", true)]
    [InlineData("*.foo.example.com", "*.example.com", true)]
    [InlineData("*.example.com", "*.example.com", true)]
    [InlineData("Foo.example.com", "foo.example.com", true)]
    [InlineData("*.example.com", "example.com", false)]
    [InlineData("*.a.com", "*.b.com", false)]
    [InlineData("a.com", "b.com", false)]
    [InlineData("*.foo.example.com", "bar.example.com", false)]
    public void HostNames_Intersect_AsTheGatewayApiSays(string a, string b, bool expected) => Assert.Equal(expected, ListenerTable.Intersect(a, b));
}
