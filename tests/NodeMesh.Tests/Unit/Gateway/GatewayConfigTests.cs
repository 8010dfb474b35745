using NodeMesh.Config;
using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>The gateway section: read as written, every mistake named by its key path.</summary>
public class GatewayConfigTests
{
    private const string Head = """
        {
          "node": { "name": "node1", "address": "10.231.0.1" },
          "trustDomain": "cluster.local",
          "ca": { "dir": "/var/lib/nodemesh/ca" },
          "gateway": GATEWAY
        }
        """;

    private static AgentConfig Parse(string gateway) => ConfigLoader.Parse(Head.Replace("GATEWAY", gateway, StringComparison.Ordinal), "test.json");

    [Fact]
    public void AFullGateway_IsReadAsWritten()
    {
        AgentConfig config = Parse("""
            {
              "listeners": [
                { "name": "web", "port": 8080 },
                { "name": "grpc", "port": 8081, "protocol": "H2c" },
                { "name": "tls", "address": "10.231.0.1", "port": 8443, "protocol": "Https",
                  "tls": { "certificates": [ { "certFile": "/etc/gw/a.pem", "keyFile": "/etc/gw/a.key" } ] } }
              ],
              "limits": { "maxConnections": 500, "requestHeadersTimeout": "3s" },
              "httpRoutes": [
                { "name": "shop", "hostnames": [ "shop.example.com", "*.shop.example.com" ], "listeners": [ "web", "tls" ],
                  "rules": [
                    { "name": "api", "matches": [ { "path": { "type": "PathPrefix", "value": "/api" }, "method": "GET" } ],
                      "filters": [
                        { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [ { "name": "x-env", "value": "prod" } ], "remove": [ "x-debug" ] } },
                        { "type": "UrlRewrite", "urlRewrite": { "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/" } } }
                      ],
                      "backendRefs": [ { "name": "orders", "port": 80, "weight": 9,
                                         "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { "add": [ { "name": "x-pool", "value": "orders" } ] } } ] },
                                       { "address": "10.0.0.9:8080", "weight": 1 } ],
                      "timeouts": { "request": "10s", "backendRequest": "2s" },
                      "retry": { "attempts": 3, "codes": [ 503 ], "backoff": "50ms" } },
                    { "filters": [ { "type": "RequestRedirect", "requestRedirect": { "scheme": "https", "statusCode": 301 } } ] }
                  ] }
              ]
            }
            """);
        GatewayConfig g = config.Gateway;
        Assert.Equal("spiffe://cluster.local/ns/nodemesh-system/sa/gateway", g.IdentityIn(config.TrustDomain));
        Assert.Equal([GatewayProtocol.Http, GatewayProtocol.H2c, GatewayProtocol.Https], g.Listeners.Select(l => l.Protocol));
        Assert.Equal("0.0.0.0", g.Listeners[0].Address);
        Assert.Equal(500, g.Limits.MaxConnections);
        Assert.Equal(TimeSpan.FromSeconds(3), g.Limits.RequestHeadersTimeout);
        Assert.Equal(32 * 1024, g.Limits.MaxRequestHeadersBytes);
        HttpRouteRuleConfig api = g.HttpRoutes[0].Rules[0];
        Assert.Equal(PathMatchType.PathPrefix, api.Matches[0].Path!.Type);
        Assert.Equal(PathModifierType.ReplacePrefixMatch, api.Filters[1].UrlRewrite!.Path!.Type);
        Assert.Equal(9, api.BackendRefs[0].Weight);
        Assert.Equal("orders", api.BackendRefs[0].Filters[0].RequestHeaderModifier!.Add[0].Value);
        Assert.Equal("orders", BackendTarget.Of(api.BackendRefs[0]).RequestHeaders!.Add[0].Value);
        Assert.Null(BackendTarget.Of(api.BackendRefs[1]).RequestHeaders);
        Assert.Equal(TimeSpan.FromSeconds(2), api.Timeouts.BackendRequest);
        Assert.Equal([503], api.Retry!.Codes);
        Assert.Equal(301, g.HttpRoutes[0].Rules[1].Filters[0].RequestRedirect!.StatusCode);
    }

    [Theory]
    [InlineData("""{ "listeners": [ { "name": "web", "port": 15008 } ] }""", "gateway.listeners[0].port: 15008 is already ports.tunnel")]
    [InlineData("""{ "listeners": [ { "name": "web", "port": 80 }, { "name": "web", "port": 81 } ] }""", "gateway.listeners[1].name: listener name 'web' is already used by gateway.listeners[0].name")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80 }, { "name": "b", "address": "10.231.0.1", "port": 80 } ] }""", "gateway.listeners[1].port: 80 is already gateway.listeners[0] (a)")]
    [InlineData("""{ "listeners": [ { "name": "a", "address": "10.231.0.300", "port": 80 } ] }""", "gateway.listeners[0].address: '10.231.0.300' must be an IPv4 or IPv6 address")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 443, "protocol": "Https" } ] }""", "gateway.listeners[0].tls: missing")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "tls": { "certificates": [] } } ] }""", "gateway.listeners[0].tls: only an Https listener takes certificates")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "protocol": "Http3" } ] }""", "gateway.listeners[0].protocol")]
    [InlineData("""{ "identity": "spiffe://other.org/ns/x/sa/gw" }""", "gateway.identity: 'spiffe://other.org/ns/x/sa/gw' is not in the trust domain 'cluster.local'")]
    [InlineData("""{ "httpRoutes": [ { "name": "r", "rules": [ { } ] } ] }""", "gateway.httpRoutes: routes need a listener")]
    [InlineData("""{ "limits": { "maxConnections": 0 } }""", "gateway.limits.maxConnections: 0 must be between 1 and")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "hostname": "*.example.com" }, { "name": "b", "port": 80, "hostname": "*.EXAMPLE.com" } ] }""", "gateway.listeners[1].hostname: '*.EXAMPLE.com' is already gateway.listeners[0] (a) on the same port; listeners that share a port need different host names")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80 }, { "name": "b", "port": 80 } ] }""", "gateway.listeners[1].hostname: none (any host) is already gateway.listeners[0] (a)")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80 }, { "name": "b", "port": 80, "hostname": "b.example.com", "protocol": "H2c" } ] }""", "gateway.listeners[1].protocol: H2c, but gateway.listeners[0] (a) on the same port is Http")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 443, "protocol": "Https", "tls": { "certificates": [ { "certFile": "/a.pem", "keyFile": "/a.key" } ] } }, { "name": "b", "port": 443, "hostname": "b.example.com", "protocol": "Https", "tls": { "certificates": [ { "certFile": "/b.pem", "keyFile": "/b.key" } ] } } ] }""", "gateway.listeners[1].port: 443 is already gateway.listeners[0] (a); an Https listener has its port to itself")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "hostname": "shop.example.com:80" } ] }""", "gateway.listeners[0].hostname: 'shop.example.com:80' must be a DNS name")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "hostname": null } ] }""", "gateway.listeners[0].hostname: must be a string")]
    [InlineData("""{ "listeners": [ { "name": "a", "port": 80, "hostname": "*.foo.example.com" } ], "httpRoutes": [ { "name": "r", "hostnames": [ "bar.example.com" ], "rules": [ { } ] } ] }""", "gateway.httpRoutes[0].hostnames: none of them is within the host name of a listener the route attaches to (a: *.foo.example.com)")]
    [InlineData("""{ "jwtProviders": [ { "name": "idp", "issuer": "https://idp/" } ] }""", "gateway.jwtProviders[0]: give one of jwksFile and jwksUri")]
    [InlineData("""{ "jwtProviders": [ { "name": "idp", "issuer": "https://idp/", "jwksUri": "ftp://idp/keys" } ] }""", "gateway.jwtProviders[0].jwksUri: 'ftp://idp/keys' must be an https:// (or http://) URL")]
    [InlineData("""{ "jwtProviders": [ { "name": "idp", "jwksFile": "/etc/jwks.json" } ] }""", "gateway.jwtProviders[0].issuer: missing")]
    [InlineData("""{ "jwtProviders": [ { "name": "idp", "issuer": "i", "jwksFile": "/k", "forwardClaims": [ { "claim": "sub", "header": "x user" } ] } ] }""", "gateway.jwtProviders[0].forwardClaims[0].header: 'x user' must be a header name")]
    [InlineData("""{ "plans": [ { "name": "gold", "dailyQuota": -1 } ] }""", "gateway.plans[0].dailyQuota: -1 must be between 0 and")]
    [InlineData("""{ "plans": [ { "name": "gold" }, { "name": "gold" } ] }""", "gateway.plans[1].name: plan name 'gold' is already used by gateway.plans[0].name")]
    [InlineData("""{ "plans": [ { "name": "gold", "rateLimits": [ { "requests": 0 } ] } ] }""", "gateway.plans[0].rateLimits[0].requests: 0 must be between 1 and")]
    [InlineData("""{ "plans": [ { "name": "gold", "rateLimits": [ { "requests": 5, "key": "Route" } ] } ] }""", "gateway.plans[0].rateLimits[0].key: unknown field 'key'")]
    public void ListenerAndLimitMistakes_AreNamed(string gateway, string expected) => AssertError(gateway, expected);

    private const string Listener = """ "listeners": [ { "name": "web", "port": 8080 } ] """;

    [Theory]
    [InlineData("""{ "name": "r", "rules": [] }""", "gateway.httpRoutes[0].rules: empty")]
    [InlineData("""{ "name": "R!", "rules": [ { } ] }""", "gateway.httpRoutes[0].name: 'R!' must be")]
    [InlineData("""{ "name": "r", "hostnames": [ "Shop.example.com:80" ], "rules": [ { } ] }""", "gateway.httpRoutes[0].hostnames[0]: 'Shop.example.com:80' must be a DNS name")]
    [InlineData("""{ "name": "r", "listeners": [ "tls" ], "rules": [ { } ] }""", "gateway.httpRoutes[0].listeners[0]: 'tls' must be the name of one of gateway.listeners (web)")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "path": { "type": "PathPrefix", "value": "api" } } ] } ] }""", "gateway.httpRoutes[0].rules[0].matches[0].path.value: 'api' must be a path starting with '/'")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "path": { "type": "RegularExpression", "value": "/(a" } } ] } ] }""", "gateway.httpRoutes[0].rules[0].matches[0].path.value: '/(a' is not a usable regular expression")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "path": { "type": "RegularExpression", "value": "/(a)\\1" } } ] } ] }""", "gateway.httpRoutes[0].rules[0].matches[0].path.value: '/(a)\\1' is not a usable regular expression")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "headers": [ { "name": "bad header", "value": "x" } ] } ] } ] }""", "gateway.httpRoutes[0].rules[0].matches[0].headers[0].name: 'bad header' must be a header name")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "method": "get" } ] } ] }""", "gateway.httpRoutes[0].rules[0].matches[0].method: 'get' must be an HTTP method in capitals")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestRedirect" } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].requestRedirect: missing")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestRedirect", "requestRedirect": { "statusCode": 200 } } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].requestRedirect.statusCode: 200 must be 301, 302, 303, 307 or 308")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestRedirect", "requestRedirect": { } } ], "backendRefs": [ { "name": "a", "port": 80 } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs: a rule with a RequestRedirect answers itself")]
    [InlineData("""{ "name": "r", "rules": [ { "matches": [ { "path": { "type": "Exact", "value": "/a" } } ], "filters": [ { "type": "UrlRewrite", "urlRewrite": { "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/b" } } } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].urlRewrite.path: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [ { "name": "x", "value": "a\r\nInjected: 1" } ] } } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].requestHeaderModifier.set[0].value: must not hold CR, LF or NUL")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a", "port": 80, "address": "10.0.0.1:80" } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0]: give either name and port")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "address": "10.0.0.1" } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].address: '10.0.0.1' must be host:port")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a" } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].port: 0 must be between 1 and 65535")]
    [InlineData("""{ "name": "r", "rules": [ { "timeouts": { "request": "1s", "backendRequest": "2s" } } ] }""", "gateway.httpRoutes[0].rules[0].timeouts.backendRequest: must not be longer than timeouts.request")]
    [InlineData("""{ "name": "r", "rules": [ { "retry": { "attempts": 50 } } ] }""", "gateway.httpRoutes[0].rules[0].retry.attempts: 50 must be between 0 and 10")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestMirror", "requestMirror": { "backendRef": { "name": "m", "port": 80 }, "percent": 101 } } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].requestMirror.percent: 101 must be between 0 and 100")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a", "port": 80, "filters": [ { "type": "UrlRewrite", "urlRewrite": { } } ] } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].filters[0].type: a backendRef takes RequestHeaderModifier and ResponseHeaderModifier, not UrlRewrite")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a", "port": 80, "filters": [ { "type": "RequestHeaderModifier" } ] } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].filters[0].requestHeaderModifier: missing")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a", "port": 80, "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { "add": [ { "name": "bad header", "value": "x" } ] } } ] } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].filters[0].requestHeaderModifier.add[0].name: 'bad header' must be a header name")]
    [InlineData("""{ "name": "r", "rules": [ { "backendRefs": [ { "name": "a", "port": 80, "filters": [ { "type": "ResponseHeaderModifier", "responseHeaderModifier": { } }, { "type": "ResponseHeaderModifier", "responseHeaderModifier": { } } ] } ] } ] }""", "gateway.httpRoutes[0].rules[0].backendRefs[0].filters[1].type: ResponseHeaderModifier is already gateway.httpRoutes[0].rules[0].backendRefs[0].filters[0]")]
    [InlineData("""{ "name": "r", "rules": [ { "filters": [ { "type": "RequestMirror", "requestMirror": { "backendRef": { "name": "m", "port": 80, "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { } } ] } } } ] } ] }""", "gateway.httpRoutes[0].rules[0].filters[0].requestMirror.backendRef.filters: a mirror's copy takes the rule's filters")]
    [InlineData("""{ "name": "r", "rules": [ { "rateLimits": [ { "requests": 5, "key": "Consumer" } ] } ] }""", "gateway.httpRoutes[0].rules[0].rateLimits: a limit keyed by Consumer needs the rule to identify consumers")]
    [InlineData("""{ "name": "r", "rules": [ { "consumers": { "apiKeyHeader": "" } } ] }""", "gateway.httpRoutes[0].rules[0].consumers: names no credential")]
    [InlineData("""{ "name": "r", "rules": [ { "consumers": { "apiKeyHeader": "x key" } } ] }""", "gateway.httpRoutes[0].rules[0].consumers.apiKeyHeader: 'x key' must be a header name")]
    [InlineData("""{ "name": "r", "rules": [ { "consumers": { "apiKeyQueryParameter": "a&b" } } ] }""", "gateway.httpRoutes[0].rules[0].consumers.apiKeyQueryParameter: 'a&b' must be a query parameter's name")]
    [InlineData("""{ "name": "r", "rules": [ { "consumers": { "allowed": [ "Bad Name" ] } } ] }""", "gateway.httpRoutes[0].rules[0].consumers.allowed[0]: 'Bad Name' must be a consumer's name")]
    [InlineData("""{ "name": "r", "rules": [ { "rateLimits": [ { "requests": 0 } ] } ] }""", "gateway.httpRoutes[0].rules[0].rateLimits[0].requests: 0 must be between 1 and")]
    [InlineData("""{ "name": "r", "rules": [ { "rateLimits": [ { "requests": 5, "window": "10ms" } ] } ] }""", "gateway.httpRoutes[0].rules[0].rateLimits[0].window: 10ms must be between 100ms and 1d")]
    [InlineData("""{ "name": "r", "rules": [ { "rateLimits": [ { "requests": 5, "algorithm": "SlidingWindow", "burst": 10 } ] } ] }""", "gateway.httpRoutes[0].rules[0].rateLimits[0].burst: only a TokenBucket takes a burst")]
    [InlineData("""{ "name": "r", "rules": [ { "rateLimits": [ { "requests": 5, "key": "Subject" } ] } ] }""", "gateway.httpRoutes[0].rules[0].rateLimits[0].key")]
    [InlineData("""{ "name": "r", "rules": [ { "jwt": { "provider": "idp" } } ] }""", "gateway.httpRoutes[0].rules[0].jwt.provider: 'idp' must be the name of one of gateway.jwtProviders (there are none)")]
    [InlineData("""{ "name": "r", "rules": [ { "jwt": { "provider": "idp", "requiredScopes": [ "a b" ] } } ] }""", "gateway.httpRoutes[0].rules[0].jwt.requiredScopes[0]: 'a b' must be a scope")]
    public void RouteMistakes_AreNamed(string route, string expected) => AssertError($$"""{ {{Listener}}, "httpRoutes": [ {{route}} ] }""", expected);

    [Theory]
    [InlineData("""{ "backend": "web!" }""", "gateway.backendPolicies[0].backend: 'web!' must be a mesh service's name or a plain backend's host:port")]
    [InlineData("""{ "backend": "web", "loadBalancer": { "type": "ConsistentHash" } }""", "gateway.backendPolicies[0].loadBalancer: ConsistentHash needs exactly one of hashHeader and hashCookie")]
    [InlineData("""{ "backend": "web", "loadBalancer": { "type": "Random" } }""", "gateway.backendPolicies[0].loadBalancer.type")]
    [InlineData("""{ "backend": "web", "healthCheck": { "path": "health" } }""", "gateway.backendPolicies[0].healthCheck.path: 'health' must be a path starting with '/'")]
    [InlineData("""{ "backend": "web", "healthCheck": { "interval": "1ms" } }""", "gateway.backendPolicies[0].healthCheck.interval: 1ms must be between 100ms and 1h")]
    [InlineData("""{ "backend": "web", "circuitBreaker": { "failureRatio": 1.5 } }""", "gateway.backendPolicies[0].circuitBreaker.failureRatio: 1.5 must be between 0 (off) and 1")]
    [InlineData("""{ "backend": "web", "circuitBreaker": { "failureRatio": 0.5, "breakDuration": "100ms" } }""", "gateway.backendPolicies[0].circuitBreaker.breakDuration: 100ms must be between 500ms and 1d")]
    [InlineData("""{ "backend": "web", "circuitBreaker": { "maxRequests": 0 } }""", "gateway.backendPolicies[0].circuitBreaker.maxRequests: 0 must be between 1 and 1000000")]
    [InlineData("""{ "backend": "web", "tls": { "hostname": "web.example.com" } }""", "gateway.backendPolicies[0].tls: only a plain backend (host:port) takes TLS settings")]
    [InlineData("""{ "backend": "10.0.0.1:443", "tls": { "hostname": "" } }""", "gateway.backendPolicies[0].tls.hostname: missing")]
    public void BackendPolicyMistakes_AreNamed(string policy, string expected) => AssertError($$"""{ {{Listener}}, "backendPolicies": [ {{policy}} ] }""", expected);

    [Theory]
    [InlineData("""{ "name": "g", "rules": [ { "matches": [ { "method": { "service": "bad service" } } ] } ] }""", "gateway.grpcRoutes[0].rules[0].matches[0].method.service: 'bad service' must be a gRPC service name")]
    [InlineData("""{ "name": "g", "rules": [ { "filters": [ { "type": "UrlRewrite", "urlRewrite": { } } ] } ] }""", "gateway.grpcRoutes[0].rules[0].filters[0].type: a GRPCRoute takes RequestHeaderModifier, ResponseHeaderModifier and RequestMirror, not UrlRewrite")]
    [InlineData("""{ "name": "g", "rules": [ { "backendRefs": [ { "name": "echo" } ] } ] }""", "gateway.grpcRoutes[0].rules[0].backendRefs[0].port: 0 must be between 1 and 65535")]
    [InlineData("""{ "name": "g", "rules": [ { "matches": [ { "method": { "type": "RegularExpression", "method": "(a" } } ] } ] }""", "gateway.grpcRoutes[0].rules[0].matches[0].method.method: '(a' is not a usable regular expression")]
    public void GrpcRouteMistakes_AreNamed(string route, string expected) => AssertError($$"""{ {{Listener}}, "grpcRoutes": [ {{route}} ] }""", expected);

    [Fact]
    public void GrpcMethodMatches_BecomePathMatches_OnPost()
    {
        HttpRouteMatchConfig Of(string json) => GrpcRoutes.Match(System.Text.Json.JsonSerializer.Deserialize(json, ConfigJsonContext.Default.GrpcRouteMatchConfig)!);
        Assert.Equal(new HttpPathMatchConfig { Type = PathMatchType.Exact, Value = "/shop.Cart/Add" }, Of("""{ "method": { "service": "shop.Cart", "method": "Add" } }""").Path);
        Assert.Equal(new HttpPathMatchConfig { Type = PathMatchType.PathPrefix, Value = "/shop.Cart" }, Of("""{ "method": { "service": "shop.Cart" } }""").Path);
        Assert.Equal(PathMatchType.RegularExpression, Of("""{ "method": { "method": "Add" } }""").Path!.Type);
        Assert.Null(Of("""{ }""").Path);
        Assert.Equal("POST", Of("""{ }""").Method);
    }

    [Fact]
    public void EveryMistake_IsReportedAtOnce()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => Parse($$"""
            { {{Listener}}, "httpRoutes": [ { "name": "r", "rules": [ { "matches": [ { "method": "get" } ], "backendRefs": [ { "address": "x" } ] } ] }, { "name": "r", "rules": [ { } ] } ] }
            """));
        Assert.Contains(ex.Errors, e => e.Contains("matches[0].method", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.Contains("backendRefs[0].address", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.Contains("gateway.httpRoutes[1].name: route name 'r' is already used", StringComparison.Ordinal));
    }

    private static void AssertError(string gateway, string expected)
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => Parse(gateway));
        Assert.True(ex.Errors.Any(e => e.Contains(expected, StringComparison.Ordinal)), $"expected an error containing\n  {expected}\ngot\n  {string.Join("\n  ", ex.Errors)}");
    }
}
