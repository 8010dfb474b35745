using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>The Gateway API's path rewrites and redirect locations (the conformance suite's HTTPRouteRewritePath and HTTPRouteRedirect* cases).</summary>
public class RequestRewriteTests
{
    private static HttpRouteMatchConfig Prefix(string value) => new() { Path = new HttpPathMatchConfig { Type = PathMatchType.PathPrefix, Value = value } };

    private static HttpPathModifierConfig ReplacePrefix(string value) => new() { Type = PathModifierType.ReplacePrefixMatch, ReplacePrefixMatch = value };

    [Theory]
    [InlineData("/prefix/one", "/one", "/prefix/one/two", "/one/two")]
    [InlineData("/prefix/one", "/one", "/prefix/one", "/one")]
    [InlineData("/prefix/one/", "/one", "/prefix/one/two", "/one/two")]
    [InlineData("/strip-prefix", "/", "/strip-prefix/three", "/three")]
    [InlineData("/strip-prefix", "/", "/strip-prefix", "/")]
    [InlineData("/api", "/v2/", "/api/users", "/v2/users")]
    [InlineData("/", "/base", "/x/y", "/base/x/y")]
    public void ReplacePrefixMatch_ReplacesOnlyTheMatchedPrefix(string prefix, string replacement, string path, string expected) =>
        Assert.Equal(expected, RequestRewrite.Path(path, ReplacePrefix(replacement), Prefix(prefix)));

    [Fact]
    public void ReplaceFullPath_ReplacesEverything() =>
        Assert.Equal("/one", RequestRewrite.Path("/full/path/original", new HttpPathModifierConfig { Type = PathModifierType.ReplaceFullPath, ReplaceFullPath = "/one" }, Prefix("/full")));

    [Theory]
    [InlineData("", "", 0, "http", "shop.example.com", 80, "http://shop.example.com/p?q=1")]
    [InlineData("https", "", 0, "http", "shop.example.com", 80, "https://shop.example.com/p?q=1")]
    [InlineData("https", "", 0, "http", "shop.example.com", 8080, "https://shop.example.com/p?q=1")]
    [InlineData("https", "", 8443, "http", "shop.example.com", 80, "https://shop.example.com:8443/p?q=1")]
    [InlineData("", "", 0, "http", "shop.example.com", 8080, "http://shop.example.com:8080/p?q=1")]
    [InlineData("", "new.example.com", 0, "http", "shop.example.com", 8080, "http://new.example.com:8080/p?q=1")]
    [InlineData("http", "", 0, "https", "shop.example.com", 443, "http://shop.example.com/p?q=1")]
    [InlineData("", "", 443, "https", "shop.example.com", 8443, "https://shop.example.com/p?q=1")]
    public void RedirectLocation_KeepsWhatTheRedirectDoesNotName_AndLeavesOutTheSchemesOwnPort(
        string scheme, string hostname, int port, string requestScheme, string requestHost, int requestPort, string expected)
    {
        var redirect = new RequestRedirectConfig { Scheme = scheme, Hostname = hostname, Port = port };
        Assert.Equal(expected, RequestRewrite.RedirectLocation(redirect, requestScheme, requestHost, requestPort, "/p", "?q=1"));
    }

    [Fact]
    public void RedirectLocation_WithoutAPortInTheRequest_UsesTheSchemesDefault() =>
        Assert.Equal("http://a.example.com/x", RequestRewrite.RedirectLocation(new RequestRedirectConfig(), "http", "a.example.com", null, "/x", ""));

    [Fact]
    public void Weights_AreSummed_NegativeOrZeroTakingNothing()
    {
        Assert.Equal(0, RequestRewrite.TotalWeight([new BackendRefConfig { Weight = 0 }]));
        Assert.Equal(4, RequestRewrite.TotalWeight([new BackendRefConfig { Weight = 1 }, new BackendRefConfig { Weight = 3 }]));
        var plan = RulePlan.Of(new HttpRouteConfig { Name = "r" },
            new HttpRouteRuleConfig { BackendRefs = [new BackendRefConfig { Name = "a", Port = 80, Weight = 1 }, new BackendRefConfig { Name = "b", Port = 80, Weight = 3 }] }, 0);
        Assert.Equal("a", plan.Choose(0)!.Ref.Name);
        Assert.Equal("b", plan.Choose(1)!.Ref.Name);
        Assert.Equal("b", plan.Choose(3)!.Ref.Name);
        Assert.Null(plan.Choose(4));
        Assert.Equal("r/0", plan.Display);
    }
}
