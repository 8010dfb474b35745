using NodeMesh.Authz;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// The edge caller carried into the mesh: the gateway on node1 authenticates a consumer (an API key) or a JWT's
/// subject, and the flow to the service on node2 carries that principal in its header; node2's policy allows only
/// some of them (<c>from.requestPrincipals</c>), and records who each flow was for. A caller the policy does not
/// name is denied even right after an allowed one: each caller's requests go on connections of their own.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayPrincipalTests(ITestOutputHelper output)
{
    private const string Issuer = "https://issuer.example.com/";

    [Fact]
    public async Task AMeshPolicyOnAnotherNode_MatchesTheCallerTheGatewayAuthenticated()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        Pod web = mesh.Pod(2, 1);
        await NginxServer.StartAsync(web, "web", 80);
        using var tokens = new TestTokens("k1");
        string jwks = Path.Combine(mesh.WorkDir, "jwks.json");
        await File.WriteAllTextAsync(jwks, tokens.Jwks);

        string gateway = $$"""
            {
              "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
              "jwtProviders": [ { "name": "idp", "issuer": "{{Issuer}}", "jwksFile": "{{jwks}}" } ],
              "httpRoutes": [
                { "name": "keys", "hostnames": [ "keys.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ], "consumers": { } } ] },
                { "name": "tokens", "hostnames": [ "tokens.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ], "jwt": { "provider": "idp" } } ] }
              ]
            }
            """;
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(gateway);
        });
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Policies = [new PolicyConfig
            {
                Name = "edge-callers", Action = "ALLOW", Selector = new SelectorConfig { Identities = [web.Identity] },
                Rules = [new RuleConfig { From = new SourceConfig { Principals = [GatewayIdentity], RequestPrincipals = ["consumer:shop-app", Issuer + "/alice"] } }],
            }];
        });

        Assert.True((await node1.CliAsync("consumer", "create", "--name", "shop-app")).Succeeded);
        Assert.True((await node1.CliAsync("consumer", "create", "--name", "other")).Succeeded);
        string shopKey = (await node1.CliAsync("consumer", "issue-key", "--name", "shop-app")).Stdout.Trim();
        string otherKey = (await node1.CliAsync("consumer", "issue-key", "--name", "other")).Stdout.Trim();
        Task<HttpAnswer> WithKey(string key) => CurlAsync(mesh, "-H", "x-api-key: " + key, "--resolve", "keys.example.com:8080:10.231.0.1", "http://keys.example.com:8080/");
        Task<HttpAnswer> WithToken(string subject) =>
            CurlAsync(mesh, "-H", "Authorization: Bearer " + tokens.Create(Issuer, "shop", subject), "--resolve", "tokens.example.com:8080:10.231.0.1", "http://tokens.example.com:8080/");

        HttpAnswer shop = await WithKey(shopKey);
        Assert.True(shop is { Status: 200, ServedBy: "web" }, node2.Explain($"the consumer the policy names must be served\n{shop}"));
        // Right after it, on the same route and endpoint: another caller's request must not ride on shop-app's flow.
        HttpAnswer other = await WithKey(otherKey);
        Assert.True(other.Status == 502, node2.Explain($"a consumer the policy does not name must be denied on node2\n{other}"));

        HttpAnswer alice = await WithToken("alice");
        Assert.True(alice is { Status: 200, ServedBy: "web" }, node2.Explain($"the JWT subject the policy names (ISSUER/SUBJECT) must be served\n{alice}"));
        Assert.Equal(502, (await WithToken("bob")).Status);
        Assert.Equal(200, (await WithKey(shopKey)).Status);

        // node2's flow log says whom each flow was for, and which were denied. The allowed flows are the gateway's
        // pooled connections: they end (and are recorded, cut off by the stop) when node1's agent stops.
        await node1.StopAsync();
        IReadOnlyList<FlowRecord> allowed = await node2.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Outcome != FlowOutcome.Denied && f.BytesSent > 0, count: 2);
        IReadOnlyList<FlowRecord> denied = await node2.WaitForFlowsAsync(f => f.Direction == "inbound" && f.Outcome == FlowOutcome.Denied, count: 2);
        Assert.True(allowed.All(f => f.SourceIdentity == GatewayIdentity) && allowed.Select(f => f.RequestPrincipal).ToHashSet().SetEquals(["consumer:shop-app", Issuer + "/alice"]),
            node2.Explain($"allowed flows: {string.Join("; ", allowed.Select(f => $"{f.SourceIdentity} for {f.RequestPrincipal}"))}"));
        Assert.True(denied.Select(f => f.RequestPrincipal).ToHashSet().SetEquals(["consumer:other", Issuer + "/bob"]),
            node2.Explain($"denied flows: {string.Join("; ", denied.Select(f => $"{f.RequestPrincipal}: {f.Result}"))}"));
    }
}
