using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// JWT authentication at the edge with real clients: the provider's JWKS served by nginx, tokens from a test
/// issuer, curl as the client. A valid token passes with its claim forwarded (a client's own header of that name
/// never does), no token or a bad one gets 401, one without the rule's scope 403, each with its WWW-Authenticate
/// challenge; a key published later is taken up on the JWKS refresh without a restart; a provider whose JWKS is
/// unreachable makes its rules fail closed while the rest is served.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayAuthTests(ITestOutputHelper output)
{
    private const string Issuer = "https://issuer.example.com/";

    [Fact]
    public async Task Tokens_AreCheckedPerRule_WithTheRightAnswers_AndARotatedKeyIsTakenUp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        Pod web = mesh.Pod(1, 1);
        await NginxServer.StartAsync(web, "web", 80);
        string keys = Path.Combine(mesh.WorkDir, "jwks");
        Directory.CreateDirectory(keys);
        using var first = new TestTokens("k1");
        using var second = new TestTokens("k2");
        await File.WriteAllTextAsync(Path.Combine(keys, "jwks.json"), first.Jwks);
        await NginxServer.StartAsync(mesh.Ext, "jwks", 8099, location: $"root {keys}; default_type application/json;");

        string gateway = $$"""
            {
              "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
              "jwtProviders": [ { "name": "idp", "issuer": "{{Issuer}}", "audiences": [ "shop" ], "jwksUri": "http://10.231.0.200:8099/jwks.json", "jwksRefresh": "10s",
                                  "forwardClaims": [ { "claim": "tier", "header": "x-env" } ] },
                                { "name": "down", "issuer": "{{Issuer}}", "jwksUri": "http://10.231.0.200:8098/jwks.json" } ],
              "httpRoutes": [
                { "name": "secure", "hostnames": [ "secure.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                    "jwt": { "provider": "idp", "requiredScopes": [ "orders:read" ] } } ] },
                { "name": "unsure", "hostnames": [ "unsure.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ], "jwt": { "provider": "down" } } ] },
                { "name": "open", "hostnames": [ "open.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ] } ] }
              ]
            }
            """;
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(gateway);
        });
        string[] secure = ["--resolve", "secure.example.com:8080:10.231.0.1", "http://secure.example.com:8080/"];
        Task<HttpAnswer> With(string? token, params string[] more) =>
            CurlAsync(mesh, [.. token is null ? [] : new[] { "-H", "Authorization: Bearer " + token }, .. more, .. secure]);
        var reading = new Dictionary<string, object> { ["scope"] = "orders:read", ["tier"] = "gold" };

        HttpAnswer valid = await With(first.Create(Issuer, "shop", "alice", reading), "-H", "x-env: forged");
        Assert.True(valid is { Status: 200, ServedBy: "web" } && valid.Field("env") == "gold", agent.Explain($"a valid token must pass with its tier forwarded, not the client's header\n{valid}"));

        HttpAnswer none = await With(null);
        Assert.True(none.Status == 401 && none.Headers.GetValueOrDefault("www-authenticate") == "Bearer" && none.ServedBy is null, agent.Explain($"no token: 401\n{none}"));
        HttpAnswer expired = await With(first.Create(Issuer, "shop", "alice", reading, lifetime: TimeSpan.FromMinutes(-5)));
        Assert.True(expired.Status == 401 && expired.Headers.GetValueOrDefault("www-authenticate")?.Contains("error=\"invalid_token\", error_description=\"the token has expired\"", StringComparison.Ordinal) == true,
            agent.Explain($"an expired token: 401 invalid_token\n{expired}"));
        HttpAnswer noScope = await With(first.Create(Issuer, "shop", "alice", new Dictionary<string, object> { ["scope"] = "orders:write" }));
        Assert.True(noScope.Status == 403 && noScope.Headers.GetValueOrDefault("www-authenticate") == "Bearer error=\"insufficient_scope\", scope=\"orders:read\"",
            agent.Explain($"a token without the scope: 403 insufficient_scope\n{noScope}"));
        Assert.Equal(200, (await CurlAsync(mesh, "--resolve", "open.example.com:8080:10.231.0.1", "http://open.example.com:8080/")).Status);

        // A provider whose JWKS cannot be fetched: the agent serves on, said why, and that provider's rules fail closed.
        Assert.True(await agent.WaitForOutputAsync("JWT provider down: cannot load its keys (http://10.231.0.200:8098/jwks.json"), agent.Explain("the unreachable JWKS must be reported"));
        HttpAnswer unsure = await CurlAsync(mesh, "-H", "Authorization: Bearer " + first.Create(Issuer, "shop", "alice", reading), "--resolve", "unsure.example.com:8080:10.231.0.1", "http://unsure.example.com:8080/");
        Assert.True(unsure.Status == 401 && unsure.ServedBy is null, agent.Explain($"without its provider's keys a rule must refuse every token\n{unsure}"));

        // The issuer rotates: it publishes k2 and signs with it. Until the next refresh (10 s) the gateway does not
        // know k2; after it, k2's tokens pass and k1's (no longer published) are refused.
        await File.WriteAllTextAsync(Path.Combine(keys, "jwks.json"), second.Jwks);
        string rotated = second.Create(Issuer, "shop", "bob", reading);
        HttpAnswer afterRotation = await With(rotated);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (afterRotation.Status != 200 && watch.Elapsed < TimeSpan.FromSeconds(25))
        {
            await Task.Delay(1000);
            afterRotation = await With(rotated);
        }

        Assert.True(afterRotation is { Status: 200, ServedBy: "web" }, agent.Explain($"a token of the rotated key must pass once the JWKS is refreshed\n{afterRotation}"));
        Assert.Equal(401, (await With(first.Create(Issuer, "shop", "alice", reading))).Status);

        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_auth_refusals_total", new Dictionary<string, string> { ["route"] = "secure/0", ["response_code"] = "403" }) == 1,
            AgentMetrics.Describe(scrape, "nodemesh_gateway_auth"));
    }
}
