using NodeMesh.Authz;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// The gateway on node1, curl from the external host, nginx backends in pod namespaces on both nodes: routing by
/// host, path, header, query and method, rewrites, header changes (a rule's and a backendRef's), redirects, 404 and
/// 500, a weighted split; mesh
/// backends reached through the tunnels under the gateway's own identity (the receiving agent records it, and
/// refuses it where a policy denies the gateway); a plain backend outside the mesh.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayRoutingTests(ITestOutputHelper output)
{
    private const int Port = 8080;

    private const string Routes = """
        {
          "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
          "httpRoutes": [
            { "name": "shop", "hostnames": [ "shop.example.com" ], "rules": [
                { "name": "canary",
                  "matches": [ { "headers": [ { "name": "x-canary", "value": "yes" } ] }, { "queryParams": [ { "name": "beta", "value": "1" } ] } ],
                  "backendRefs": [ { "name": "shop-v2", "port": 80 } ] },
                { "name": "api", "matches": [ { "path": { "type": "PathPrefix", "value": "/api" } } ],
                  "filters": [
                    { "type": "UrlRewrite", "urlRewrite": { "hostname": "orders.internal", "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/" } } },
                    { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [ { "name": "x-env", "value": "prod" } ], "remove": [ "x-debug" ] } },
                    { "type": "ResponseHeaderModifier", "responseHeaderModifier": { "add": [ { "name": "x-gateway", "value": "nodemesh" } ], "remove": [ "x-internal" ] } } ],
                  "backendRefs": [ { "name": "orders", "port": 80 } ] },
                { "name": "cart", "matches": [ { "path": { "type": "Exact", "value": "/cart" }, "method": "POST" } ],
                  "backendRefs": [ { "address": "10.231.0.200:8090" } ] },
                { "name": "old", "matches": [ { "path": { "type": "PathPrefix", "value": "/old" } } ],
                  "filters": [ { "type": "RequestRedirect", "requestRedirect": { "scheme": "https", "hostname": "www.example.com",
                    "path": { "type": "ReplacePrefixMatch", "replacePrefixMatch": "/new" }, "statusCode": 301 } } ] },
                { "name": "split",
                  "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [ { "name": "x-env", "value": "rule" } ] } } ],
                  "backendRefs": [
                    { "name": "shop-v1", "port": 80, "weight": 3,
                      "filters": [ { "type": "RequestHeaderModifier", "requestHeaderModifier": { "set": [ { "name": "x-env", "value": "blue" } ] } } ] },
                    { "name": "shop-v2", "port": 80, "weight": 1,
                      "filters": [ { "type": "ResponseHeaderModifier", "responseHeaderModifier": { "set": [ { "name": "x-backend", "value": "v2" } ] } } ] } ] } ] },
            { "name": "vault", "hostnames": [ "vault.example.com" ], "rules": [ { "backendRefs": [ { "name": "vault", "port": 80 } ] } ] },
            { "name": "empty", "hostnames": [ "empty.example.com" ], "rules": [ { "backendRefs": [] } ] }
          ]
        }
        """;

    [Fact]
    public async Task Requests_AreRoutedByHostPathHeaderQueryAndMethod_ToMeshServicesUnderTheGatewaysIdentity_AndADenyingPolicyRefusesIt()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod shopV1 = mesh.Pod(1, 1), orders = mesh.Pod(1, 2), shopV2 = mesh.Pod(2, 1), vault = mesh.Pod(2, 2);
        foreach ((Pod pod, string name) in new[] { (shopV1, "shop-v1"), (orders, "orders"), (shopV2, "shop-v2"), (vault, "vault") })
        {
            // One request per connection: each is a flow of its own, recorded when it ends.
            await NginxServer.StartAsync(pod, name, 80, keepalive: false);
        }

        await NginxServer.StartAsync(mesh.Ext, "legacy", 8090);
        List<ServiceConfig> services = [Service("shop-v1", 1, shopV1), Service("shop-v2", 2, shopV2), Service("orders", 3, orders), Service("vault", 4, vault)];
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s =>
        {
            s.Policies.Add(new PolicyConfig
            {
                Name = "no-gateway-to-vault", Action = "DENY",
                Selector = new SelectorConfig { Identities = [vault.Identity] },
                Rules = [new RuleConfig { From = new SourceConfig { Principals = [GatewayIdentity] } }],
            });
            s.Customize = c => c.Services = services;
        });
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = services;
            c.Gateway = Parse(Routes);
        });
        Assert.True(await node1.WaitForOutputAsync("gateway: listening on"), node1.Explain("the agent must say it serves the gateway"));

        string[] resolve = ["--resolve", $"shop.example.com:{Port}:{mesh.Node(1).Ip}", "--resolve", $"vault.example.com:{Port}:{mesh.Node(1).Ip}",
            "--resolve", $"empty.example.com:{Port}:{mesh.Node(1).Ip}", "--resolve", $"other.example.com:{Port}:{mesh.Node(1).Ip}"];
        Task<HttpAnswer> Get(string url, params string[] more) => CurlAsync(mesh, [.. resolve, .. more, url]);
        const string Shop = "http://shop.example.com:8080";

        // Header and query matches take the canary rule; without them the split.
        HttpAnswer canary = await Get(Shop + "/", "-H", "x-canary: yes");
        Assert.True(canary is { Status: 200, ServedBy: "shop-v2" }, node1.Explain($"x-canary: yes must reach shop-v2\n{canary}"));
        HttpAnswer beta = await Get(Shop + "/?beta=1");
        Assert.True(beta is { Status: 200, ServedBy: "shop-v2" }, node1.Explain($"?beta=1 must reach shop-v2\n{beta}"));

        // The prefix rewritten, the Host rewritten, request headers set and removed, response headers added and removed.
        HttpAnswer api = await Get(Shop + "/api/orders/7?x=1", "-H", "x-debug: 1", "-H", "x-env: dev");
        Assert.True(api is { Status: 200, ServedBy: "orders" }, node1.Explain($"/api must reach orders\n{api}"));
        Assert.Equal("/orders/7?x=1", api.Field("uri"));
        Assert.Equal("orders.internal", api.Field("host"));
        Assert.Equal("prod", api.Field("env"));
        Assert.Equal("", api.Field("debug"));
        Assert.Equal(mesh.Ext.Ip.ToString(), api.Field("xff"));
        Assert.Equal("http", api.Field("xfp"));
        Assert.Equal("nodemesh", api.Headers.GetValueOrDefault("x-gateway"));
        Assert.False(api.Headers.ContainsKey("x-internal"), $"x-internal must be removed\n{api}");

        // The method match: POST /cart to the plain backend outside the mesh, GET /cart falls through to the split.
        HttpAnswer post = await Get(Shop + "/cart", "-X", "POST", "-d", "item=1");
        Assert.True(post is { Status: 200, ServedBy: "legacy" }, node1.Explain($"POST /cart must reach the plain backend\n{post}"));
        Assert.Equal("POST", post.Field("method"));
        HttpAnswer getCart = await Get(Shop + "/cart");
        Assert.True(getCart.ServedBy is "shop-v1" or "shop-v2", node1.Explain($"GET /cart is not the cart rule's\n{getCart}"));

        // A redirect answered by the gateway itself, the prefix replaced and the query kept.
        HttpAnswer old = await Get(Shop + "/old/page?x=1");
        Assert.True(old.Status == 301, node1.Explain($"/old must be redirected\n{old}"));
        Assert.Equal("https://www.example.com/new/page?x=1", old.Headers.GetValueOrDefault("location"));

        // No route: 404; a rule without a backend: 500 (as the Gateway API says).
        HttpAnswer unknown = await Get("http://other.example.com:8080/");
        Assert.True(unknown.Status == 404, node1.Explain($"an unrouted host must get 404\n{unknown}"));
        HttpAnswer empty = await Get("http://empty.example.com:8080/");
        Assert.True(empty.Status == 500, node1.Explain($"a rule without backends must get 500\n{empty}"));

        // The weighted split, 3:1, within a tolerance that fails one run in millions by chance (5 standard deviations).
        const int Requests = 200;
        CommandResult many = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(60), "curl", ["-s", "-S", "--max-time", "50", .. resolve, .. Enumerable.Repeat(Shop + "/", Requests)]);
        string[] lines = many.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int v1 = lines.Count(l => l.StartsWith("served-by=shop-v1 ", StringComparison.Ordinal));
        int v2 = lines.Count(l => l.StartsWith("served-by=shop-v2 ", StringComparison.Ordinal));
        Assert.True(v1 + v2 == Requests, node1.Explain($"every request of the split must be answered by shop-v1 or shop-v2: {v1} + {v2} of {Requests}\n{many}"));
        Assert.True(v1 is >= 120 and <= 180, node1.Explain($"weights 3:1 over {Requests} requests: shop-v1 took {v1}, shop-v2 {v2}"));

        // A backendRef's own filters apply only when it is chosen, after the rule's: shop-v1's request header
        // replaces the rule's, shop-v2 keeps the rule's and its answers get the header of its own filter.
        Assert.True(lines.Where(l => l.StartsWith("served-by=shop-v1 ", StringComparison.Ordinal)).All(l => l.Contains(" env=blue ", StringComparison.Ordinal))
            && lines.Where(l => l.StartsWith("served-by=shop-v2 ", StringComparison.Ordinal)).All(l => l.Contains(" env=rule ", StringComparison.Ordinal)),
            node1.Explain($"shop-v1 must get x-env: blue (its backendRef's filter), shop-v2 the rule's x-env: rule\n{many.Stdout[..Math.Min(2000, many.Stdout.Length)]}"));
        var backendHeaders = new Dictionary<string, string?>();
        for (int i = 0; i < 40 && backendHeaders.Count < 2; i++)
        {
            HttpAnswer one = await Get(Shop + "/");
            backendHeaders[one.ServedBy ?? "?"] = one.Headers.GetValueOrDefault("x-backend");
        }

        Assert.True(backendHeaders.Count == 2 && backendHeaders["shop-v1"] is null && backendHeaders["shop-v2"] == "v2",
            node1.Explain($"only shop-v2's answers get its backendRef's response header: {string.Join(", ", backendHeaders)}"));
        Assert.Equal("", canary.Field("env"));

        // The receiving agents saw the gateway's identity, encrypted: node2 for shop-v2, node1's own tunnel listener for shop-v1.
        IReadOnlyList<FlowRecord> atNode2 = await node2.WaitForFlowsAsync(f => f.DestinationWorkload == shopV2.Name && f.Direction == "inbound");
        Assert.True(atNode2.All(f => f.SourceIdentity == GatewayIdentity && f.Encrypted && f.Outcome == FlowOutcome.Ok),
            node2.Explain($"node2 must record the gateway's identity on encrypted flows: {string.Join("; ", atNode2.Select(f => $"{f.SourceIdentity} {f.Encrypted} {f.Outcome}"))}"));
        IReadOnlyList<FlowRecord> atNode1 = await node1.WaitForFlowsAsync(f => f.DestinationWorkload == shopV1.Name && f.Direction == "inbound");
        Assert.True(atNode1.All(f => f.SourceIdentity == GatewayIdentity && f.Encrypted),
            node1.Explain($"a local endpoint is reached through the node's own tunnel listener: {string.Join("; ", atNode1.Select(f => $"{f.SourceIdentity} {f.Encrypted} {f.Path}"))}"));

        // The policy on node2 denies the gateway: the request fails, the agent there records the denial.
        HttpAnswer denied = await Get("http://vault.example.com:8080/");
        Assert.True(denied.Status == 502, node1.Explain($"a service whose policy denies the gateway must not be reached\n{denied}"));
        IReadOnlyList<FlowRecord> refusals = await node2.WaitForFlowsAsync(f => f.DestinationWorkload == vault.Name && f.Outcome == FlowOutcome.Denied);
        Assert.Equal(GatewayIdentity, refusals[0].SourceIdentity);
        Assert.True(await node1.WaitForOutputAsync("cannot connect to mesh service vault at n2p2"), node1.Explain("the gateway must log why the vault could not be reached"));
    }
}
