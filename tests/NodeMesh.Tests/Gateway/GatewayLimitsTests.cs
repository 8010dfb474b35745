using System.Globalization;
using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// The gateway's limits against hostile clients while a well-behaved one is served: slowloris connections are
/// closed at the header timeout, oversized headers and bodies get 431 and 413, an HTTP/2 rapid-reset flood's connection is
/// closed, a rule's rate limits answer 429 per client and for the whole rule, and the other client's requests go on
/// answering promptly throughout.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayLimitsTests(ITestOutputHelper output)
{
    private const string Gateway = """
        {
          "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 }, { "name": "h2c", "address": "10.231.0.1", "port": 8081, "protocol": "H2c" } ],
          "limits": { "requestHeadersTimeout": "2s", "maxRequestHeadersBytes": 8192, "maxRequestHeaderCount": 50, "maxRequestBodyBytes": 1048576, "maxConnections": 500 },
          "accessLog": false,
          "httpRoutes": [
            { "name": "all", "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ] } ] },
            { "name": "limited", "hostnames": [ "limited.example.com" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                "rateLimits": [ { "key": "ClientAddress", "requests": 3, "window": "1m" },
                                { "key": "Route", "algorithm": "SlidingWindow", "requests": 5, "window": "1m" } ] } ] }
          ]
        }
        """;

    /// <summary>A generous bound for one request on this 2-core machine while it is under attack: no request of the good client may take longer.</summary>
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task HostileClients_AreRefused_WhileAnotherClientIsServedPromptly()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        Pod web = mesh.Pod(1, 1);
        await NginxServer.StartAsync(web, "web", 80);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(Gateway);
        });
        Assert.All(await GoodClientAsync(mesh, 5), t => Assert.True(t < Prompt, $"a request took {t} before any attack"));

        // Rate limits: three requests a minute per client address, five a minute for the whole rule. The fourth of
        // one client is refused with 429 and when to come back; a second client has its own three, but the rule's
        // five run out first; other routes are not limited.
        string[] limited = ["--resolve", "limited.example.com:8080:10.231.0.1", "http://limited.example.com:8080/"];
        for (int i = 0; i < 3; i++)
        {
            HttpAnswer passed = await CurlAsync(mesh, limited);
            Assert.True(passed is { Status: 200, ServedBy: "web" } && passed.Headers.GetValueOrDefault("ratelimit-remaining") == (2 - i).ToString(CultureInfo.InvariantCulture),
                agent.Explain($"request {i + 1} of 3 allowed must pass, saying what is left\n{passed}"));
        }

        HttpAnswer refused = await CurlAsync(mesh, limited);
        Assert.True(refused.Status == 429 && refused.Headers.GetValueOrDefault("ratelimit-remaining") == "0" && refused.Headers.GetValueOrDefault("ratelimit-limit") == "3"
            && int.TryParse(refused.Headers.GetValueOrDefault("retry-after"), out int retryAfter) && retryAfter is >= 1 and <= 60
            && refused.Body.Contains("rate limit of route limited/0: 3 requests per 1m per client address", StringComparison.Ordinal),
            agent.Explain($"the fourth request of a minute must be refused with 429 and Retry-After\n{refused}"));
        string[] other = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\n", "--resolve", "limited.example.com:8080:10.231.0.1", "http://limited.example.com:8080/"];
        var fromPod = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            fromPod.Add((await web.RunAsync(other[0], other[1..])).Stdout.Trim());
        }

        Assert.True(fromPod is ["200", "200", "429"], agent.Explain($"another client: two more fit the rule's five, the third does not: {string.Join(",", fromPod)}"));
        Assert.Equal(200, (await CurlAsync(mesh, "http://10.231.0.1:8080/")).Status);
        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_rate_limited_total", new Dictionary<string, string> { ["route"] = "limited/0", ["key"] = "client_address" }) == 1
            && AgentMetrics.Value(scrape, "nodemesh_gateway_rate_limited_total", new Dictionary<string, string> { ["route"] = "limited/0", ["key"] = "route" }) == 1,
            AgentMetrics.Describe(scrape, "nodemesh_gateway_rate_limited"));

        // Slowloris: 100 connections that never finish their headers are closed at the 2 s header timeout.
        BackgroundProcess slow = BackgroundProcess.Start(mesh.Ext, "/usr/bin/python3", TestPaths.GatewayScript("slow-client.py"), "10.231.0.1", "8080", "100", "12");
        await Task.Delay(500);
        IReadOnlyList<TimeSpan> during = await GoodClientAsync(mesh, 20);
        Assert.True(during.All(t => t < Prompt), agent.Explain($"the good client's requests during slowloris: {string.Join(", ", during.Select(t => t.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)))} ms"));
        Assert.Equal(0, await slow.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(slow.Output.Contains("closed=100 open=0", StringComparison.Ordinal), agent.Explain($"every slow connection must be closed by the header timeout: {slow.Output}"));

        // Oversized headers, too many headers, an oversized body.
        string big = new('x', 10_000);
        Assert.Equal(431, (await CurlAsync(mesh, "-H", "X-Big: " + big, "http://10.231.0.1:8080/")).Status);
        Assert.Equal(431, (await CurlAsync(mesh, [.. Enumerable.Range(0, 60).SelectMany(i => new[] { "-H", $"X-H{i}: v" }), "http://10.231.0.1:8080/"])).Status);
        string body = Path.Combine(mesh.WorkDir, "big-body");
        await File.WriteAllBytesAsync(body, new byte[2 * 1024 * 1024]);
        Assert.Equal(413, (await CurlAsync(mesh, "--data-binary", "@" + body, "-H", "Expect:", "http://10.231.0.1:8080/")).Status);

        // HTTP/2 rapid reset: the flood's connection is cut off, and the good client is still served promptly.
        BackgroundProcess flood = BackgroundProcess.Start(mesh.Ext, "/usr/bin/python3", TestPaths.GatewayScript("rapid-reset.py"), "10.231.0.1", "8081", "100000");
        await Task.Delay(200);
        IReadOnlyList<TimeSpan> underFlood = await GoodClientAsync(mesh, 20, "--http2-prior-knowledge", "http://10.231.0.1:8081/");
        Assert.Equal(0, await flood.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        output.WriteLine($"rapid reset: {flood.Output.Trim()}");
        Assert.True(flood.Output.StartsWith("goaway", StringComparison.Ordinal) || flood.Output.StartsWith("closed", StringComparison.Ordinal),
            agent.Explain($"a rapid-reset flood must be cut off: {flood.Output}"));
        Assert.True(await agent.WaitForOutputAsync("closed: it cancelled requests faster than gateway.limits.maxClientResetsPerSecond allows"),
            agent.Explain("the cut-off must be logged"));
        Assert.True(underFlood.All(t => t < Prompt), agent.Explain($"the good client's requests during the flood: {string.Join(", ", underFlood.Select(t => t.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)))} ms"));
    }

    /// <summary><paramref name="count"/> requests one after another, each answered 200; their times.</summary>
    private static async Task<IReadOnlyList<TimeSpan>> GoodClientAsync(Topology mesh, int count, params string[] request)
    {
        string[] target = request.Length > 0 ? request : ["http://10.231.0.1:8080/"];
        var times = new List<TimeSpan>();
        for (int i = 0; i < count; i++)
        {
            CommandResult result = await mesh.Ext.RunAsync("curl", ["-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", .. target]);
            string[] parts = result.Stdout.Trim().Split(' ');
            Assert.True(parts.Length == 2 && parts[0] == "200", $"the good client must be answered 200: {result}");
            times.Add(TimeSpan.FromSeconds(double.Parse(parts[1], CultureInfo.InvariantCulture)));
        }

        return times;
    }
}
