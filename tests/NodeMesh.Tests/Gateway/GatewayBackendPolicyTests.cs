using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// Backend policies with real endpoints on two nodes: round robin spreads requests evenly over one client
/// connection, a consistent hash keeps a user on one endpoint, health checks take a dead endpoint out and bring
/// it back, failing endpoints are ejected, a failing backend's circuit opens, a full backend refuses at once, and a connection limit per endpoint makes
/// requests wait for a connection.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayBackendPolicyTests(ITestOutputHelper output)
{
    private static string Route(string name, int port) =>
        $$"""{ "name": "{{name}}", "hostnames": [ "{{name}}.example.com" ], "rules": [ { "backendRefs": [ { "name": "{{name}}", "port": {{port}} } ] } ] }""";

    private static readonly string Gateway = $$"""
        {
          "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
          "httpRoutes": [ {{Route("rr", 80)}}, {{Route("sticky", 80)}}, {{Route("cookie", 80)}}, {{Route("checked", 80)}}, {{Route("ejecting", 81)}}, {{Route("breaker", 82)}}, {{Route("limited", 83)}}, {{Route("pooled", 84)}}, {{Route("free", 84)}} ],
          "backendPolicies": [
            { "backend": "rr", "loadBalancer": { "type": "RoundRobin" } },
            { "backend": "sticky", "loadBalancer": { "type": "ConsistentHash", "hashHeader": "x-user" } },
            { "backend": "cookie", "loadBalancer": { "type": "ConsistentHash", "hashCookie": "session" } },
            { "backend": "checked", "loadBalancer": { "type": "RoundRobin" },
              "healthCheck": { "path": "/", "interval": "300ms", "timeout": "200ms", "unhealthyThreshold": 2, "healthyThreshold": 1 } },
            { "backend": "ejecting", "loadBalancer": { "type": "RoundRobin" }, "outlierDetection": { "consecutive5xx": 3, "baseEjectionTime": "30s", "maxEjectionPercent": 50 } },
            { "backend": "breaker", "outlierDetection": { "consecutive5xx": 0 },
              "circuitBreaker": { "failureRatio": 0.5, "minimumThroughput": 4, "samplingDuration": "10s", "breakDuration": "30s" } },
            { "backend": "limited", "circuitBreaker": { "maxRequests": 1, "maxPendingRequests": 0 } },
            { "backend": "pooled", "circuitBreaker": { "maxConnections": 1 } }
          ]
        }
        """;

    [Fact]
    public async Task Policies_BalanceCheckEjectAndBreak_AsConfigured()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod a = mesh.Pod(1, 1), b = mesh.Pod(1, 2), c = mesh.Pod(2, 1), d = mesh.Pod(2, 2);
        await NginxServer.StartAsync(a, "a", 80);
        await NginxServer.StartAsync(b, "b", 80);
        await NginxServer.StartAsync(c, "c", 80);
        NginxServer dServer = await NginxServer.StartAsync(d, "d", 80);
        foreach ((Pod pod, string port, string name, string mode) in new[] { (c, "81", "good", "ok"), (b, "81", "bad", "fail"), (d, "82", "broken", "fail"), (d, "83", "slow", "ok"), (d, "84", "pool", "ok") })
        {
            BackgroundProcess server = BackgroundProcess.Start(pod, "/usr/bin/python3", TestPaths.GatewayScript("test-backend.py"), port, name, mode);
            Assert.True(await server.WaitForOutputAsync("listening", TimeSpan.FromSeconds(15)), $"{name} did not start: {server.Output}");
        }

        List<Config.ServiceConfig> services =
        [
            Service("rr", 1, a, b, c), Service("sticky", 2, a, b, c), Service("checked", 3, c, d), Service("cookie", 7, a, b, c),
            WithPort(Service("ejecting", 4, c, b), 81), WithPort(Service("breaker", 5, d), 82), WithPort(Service("limited", 6, d), 83),
            WithPort(Service("pooled", 8, d), 84), WithPort(Service("free", 9, d), 84),
        ];
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = cfg => cfg.Services = services);
        AgentProcess gw = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = cfg =>
        {
            cfg.Services = services;
            cfg.Gateway = Parse(Gateway);
        });

        // Round robin: 30 requests on one client connection, 10 to each endpoint.
        string[] rr = await ManyAsync(mesh, "rr", 30);
        Assert.True(new[] { "a", "b", "c" }.All(n => rr.Count(s => s == n) == 10), gw.Explain($"round robin over a, b, c: {string.Join(",", rr)}"));

        // Consistent hash: each user's requests all go to one endpoint.
        foreach (string user in new[] { "alice", "bob", "carol", "dave" })
        {
            string[] seen = await ManyAsync(mesh, "sticky", 10, "-H", $"x-user: {user}");
            Assert.True(seen.Length == 10 && seen.Distinct().Count() == 1, gw.Explain($"{user} must stay on one endpoint: {string.Join(",", seen)}"));
        }

        // Consistent hash by cookie: each session's requests go to one endpoint, and the sessions do not all land on one.
        var homes = new HashSet<string>();
        foreach (string session in new[] { "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8" })
        {
            string[] seen = await ManyAsync(mesh, "cookie", 6, "--cookie", $"session={session}");
            Assert.True(seen.Length == 6 && seen.Distinct().Count() == 1, gw.Explain($"session {session} must stay on one endpoint: {string.Join(",", seen)}"));
            homes.Add(seen[0]);
        }

        Assert.True(homes.Count > 1, gw.Explain($"eight sessions all on {string.Join(",", homes)}: the cookie is not what is hashed"));

        // Health checks: d's nginx stops; once two checks failed d is out, and every request is answered by c.
        string[] both = await ManyAsync(mesh, "checked", 4);
        Assert.True(both.Count(s => s == "c") == 2 && both.Count(s => s == "d") == 2, gw.Explain($"both endpoints serve while healthy: {string.Join(",", both)}"));
        await dServer.DisposeAsync();
        Assert.True(await gw.WaitForOutputAsync($"backend checked:80: endpoint {d.Name} is unhealthy"), gw.Explain("the dead endpoint must be found out by the health checks"));
        string[] onlyC = await ManyAsync(mesh, "checked", 10);
        Assert.True(onlyC.All(s => s == "c"), gw.Explain($"an unhealthy endpoint takes no requests: {string.Join(",", onlyC)}"));
        await NginxServer.StartAsync(d, "d", 80);
        Assert.True(await gw.WaitForOutputAsync($"backend checked:80: endpoint {d.Name} is healthy again"), gw.Explain("a recovered endpoint must be taken back"));
        Assert.Contains("d", await ManyAsync(mesh, "checked", 4));

        // Outlier ejection: b fails every request; after 3 in a row it is ejected, and good takes the rest.
        string[] ejecting = await ManyAsync(mesh, "ejecting", 20, statuses: true);
        Assert.True(ejecting.Count(s => s == "503") == 3 && ejecting.Count(s => s == "200") == 17,
            gw.Explain($"three failures of b, then b ejected: {string.Join(",", ejecting)}"));
        Assert.True(await gw.WaitForOutputAsync($"backend ejecting:81: endpoint {b.Name} ejected for 30s after 3 failures in a row"), gw.Explain("the ejection must be logged"));

        // The circuit breaker: 4 failures open it (ratio 0.5, minimum 4); the rest are refused without reaching the backend.
        string[] broken = await ManyAsync(mesh, "breaker", 10, statuses: true);
        Assert.True(broken.All(s => s == "503"), gw.Explain($"a failing backend answers 503 either way: {string.Join(",", broken)}"));
        CommandResult reached = await d.RunAsync("curl", "-s", "--max-time", "5", "http://127.0.0.1:82/count");
        Assert.True(reached.Stdout.Trim() == "4", gw.Explain($"the open circuit must keep requests from the backend: it saw {reached.Stdout.Trim()} of 10"));
        Assert.True(await gw.WaitForOutputAsync("backend breaker:82: circuit opened for 30s"), gw.Explain("the opened circuit must be logged"));

        // Limits: one request at a time and none waiting; a second one at the same time is refused at once.
        CommandResult pair = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(30), "curl", "-s", "--parallel", "--parallel-immediate", "--max-time", "10",
            "--resolve", "limited.example.com:8080:10.231.0.1", "-w", "STATUS=%{http_code}\n",
            "http://limited.example.com:8080/slow?ms=1500", "http://limited.example.com:8080/slow?ms=1500");
        string[] codes = [.. Statuses(pair.Stdout).Order()];
        Assert.True(codes is ["200", "503"], gw.Explain($"one of two concurrent requests must be refused: {pair.Stdout}"));

        // maxConnections per endpoint: three requests at once wait for the one connection (all served, over one
        // connection); without the limit, the same three go over three connections.
        string[] pooled = await ParallelPeersAsync(mesh, "pooled", 3);
        Assert.True(pooled.Length == 3 && pooled.Distinct().Count() == 1, gw.Explain($"maxConnections 1: three requests over one connection, not {string.Join(",", pooled)}"));
        string[] free = await ParallelPeersAsync(mesh, "free", 3);
        Assert.True(free.Length == 3 && free.Distinct().Count() == 3, gw.Explain($"without the limit three concurrent requests take three connections, not {string.Join(",", free)}"));

        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.Equal(1, AgentMetrics.Value(scrape, "nodemesh_gateway_endpoint_ejections_total", new Dictionary<string, string> { ["backend"] = "ejecting:81" }));
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_backend_refusals_total", new Dictionary<string, string> { ["backend"] = "breaker:82", ["reason"] = "circuit_open" }) == 6,
            AgentMetrics.Describe(scrape, "nodemesh_gateway"));
        Assert.Equal(1, AgentMetrics.Value(scrape, "nodemesh_gateway_backend_refusals_total", new Dictionary<string, string> { ["backend"] = "limited:83", ["reason"] = "overflow" }));
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_health_check_failures_total", new Dictionary<string, string> { ["backend"] = "checked:80" }) >= 2,
            AgentMetrics.Describe(scrape, "nodemesh_gateway"));
        Assert.True(AgentMetrics.Value(scrape, "istio_requests_total", new Dictionary<string, string> { ["route"] = "breaker/0", ["response_flags"] = "UO" }) == 6,
            AgentMetrics.Describe(scrape, "istio_requests_total"));
    }

    private static Config.ServiceConfig WithPort(Config.ServiceConfig service, int port)
    {
        service.Ports = [new Config.ServicePortConfig { Port = port }];
        return service;
    }

    /// <summary>
    /// <paramref name="count"/> requests to NAME.example.com over one curl (one keep-alive connection): who served
    /// each (served-by=), or with <paramref name="statuses"/> each one's status code.
    /// </summary>
    private static async Task<string[]> ManyAsync(Topology mesh, string name, int count, params string[] more) => await ManyAsync(mesh, name, count, false, more);

    private static async Task<string[]> ManyAsync(Topology mesh, string name, int count, bool statuses, params string[] more)
    {
        string url = $"http://{name}.example.com:8080/";
        CommandResult result = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(60), "curl",
            ["-s", "--max-time", "50", "--resolve", $"{name}.example.com:8080:10.231.0.1", "-w", "STATUS=%{http_code}\n", .. more, .. Enumerable.Repeat(url, count)]);
        string[] lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return statuses ? Statuses(result.Stdout) : [.. lines.Where(l => l.StartsWith("served-by=", StringComparison.Ordinal)).Select(l => l["served-by=".Length..].Split(' ')[0])];
    }

    /// <summary><paramref name="count"/> slow requests at once to NAME.example.com: the backend's peer port of each that succeeded.</summary>
    private static async Task<string[]> ParallelPeersAsync(Topology mesh, string name, int count)
    {
        CommandResult result = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(60), "curl",
            ["-s", "--parallel", "--parallel-immediate", "--max-time", "30", "--resolve", $"{name}.example.com:8080:10.231.0.1",
             .. Enumerable.Repeat($"http://{name}.example.com:8080/slow?ms=700", count)]);
        return [.. result.Stdout.Split('\n').Where(l => l.StartsWith("served-by=pool ", StringComparison.Ordinal)).Select(l => l[(l.LastIndexOf("peer=", StringComparison.Ordinal) + 5)..].Trim())];
    }

    /// <summary>The status of each transfer, from curl's -w "STATUS=%{http_code}" lines.</summary>
    private static string[] Statuses(string stdout) =>
        [.. stdout.Split('\n').Where(l => l.StartsWith("STATUS=", StringComparison.Ordinal)).Select(l => l["STATUS=".Length..].Trim())];
}
