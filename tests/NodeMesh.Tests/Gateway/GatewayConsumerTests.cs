using System.Text.Json;
using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// API consumers at the edge with real clients: consumers made and their keys issued, rotated and revoked with
/// <c>nodemesh consumer</c> and the admin API, then curl with a key in a header or the query, or with a client
/// certificate mapped to a consumer; each plan's per-consumer rate limit and daily quota answered 429 with
/// Retry-After; a disabled consumer 403; all of it kept in the state directory across a restart.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayConsumerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Consumers_AreIdentifiedByKeyOrCertificate_HeldToTheirPlans_AndKeptAcrossARestart()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        Pod web = mesh.Pod(1, 1);
        await NginxServer.StartAsync(web, "web", 80);
        string dir = Path.Combine(mesh.WorkDir, "tls");
        Directory.CreateDirectory(dir);
        await SignedCertificateAsync(dir, "servers", "api.example.com", "serverAuth");
        await SignedCertificateAsync(dir, "clients", "client.example.com", "clientAuth");
        await SignedCertificateAsync(dir, "clients", "other.example.com", "clientAuth");

        // x-debug carries the key (the nginx backend echoes it, so the test sees it is taken off); x-env the consumer.
        string gateway = $$"""
            {
              "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 },
                             { "name": "mtls", "address": "10.231.0.1", "port": 8443, "protocol": "Https",
                               "tls": { "certificates": [ { "certFile": "{{dir}}/api.example.com.pem", "keyFile": "{{dir}}/api.example.com.key" } ],
                                        "clientValidation": { "caFile": "{{dir}}/clients-ca.pem" } } } ],
              "plans": [ { "name": "gold", "rateLimits": [ { "requests": 6, "window": "1h" } ] },
                         { "name": "trial", "dailyQuota": 2 } ],
              "httpRoutes": [
                { "name": "api", "listeners": [ "web" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                    "consumers": { "apiKeyHeader": "x-debug", "apiKeyQueryParameter": "apikey", "forwardHeader": "x-env" } } ] },
                { "name": "partner", "listeners": [ "mtls" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                    "consumers": { "apiKeyHeader": "", "clientCertificates": true, "forwardHeader": "x-env" } } ] }
              ]
            }
            """;
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(gateway);
        });
        Task<HttpAnswer> Call(string? key, string path = "/", params string[] more) =>
            CurlAsync(mesh, [.. key is null ? [] : new[] { "-H", "x-debug: " + key }, .. more, $"http://10.231.0.1:8080{path}"]);

        HttpAnswer none = await Call(null);
        Assert.True(none.Status == 401 && none.Headers.GetValueOrDefault("www-authenticate") == "ApiKey realm=\"nodemesh\", header=\"x-debug\", query=\"apikey\"" && none.ServedBy is null,
            agent.Explain($"no key: 401 with the challenge\n{none}"));

        Assert.True((await agent.CliAsync("consumer", "create", "--name", "shop-app", "--plan", "gold", "--description", "the shop's app")).Succeeded);
        CommandResult issued = await agent.CliAsync("consumer", "issue-key", "--name", "shop-app");
        string key = issued.Stdout.Trim();
        Assert.True(issued.Succeeded && key.StartsWith("nmk_", StringComparison.Ordinal) && issued.Stderr.Contains("not shown again", StringComparison.Ordinal), issued.ToString());
        CommandResult unknownPlan = await agent.CliAsync("consumer", "create", "--name", "x", "--plan", "platinum");
        Assert.True(!unknownPlan.Succeeded && unknownPlan.Stderr.Contains("no plan named platinum in gateway.plans", StringComparison.Ordinal), unknownPlan.ToString());

        // A key in the header or the query: the consumer's name goes to the backend (never the client's own), the key does not.
        HttpAnswer byHeader = await Call(key, "/", "-H", "x-env: forged");
        Assert.True(byHeader is { Status: 200, ServedBy: "web" } && byHeader.Field("env") == "shop-app" && byHeader.Field("debug") == "", agent.Explain($"a good key passes, named\n{byHeader}"));
        Assert.Equal("6", byHeader.Headers.GetValueOrDefault("ratelimit-limit"));
        HttpAnswer byQuery = await Call(null, $"/orders?apikey={key}&page=2");
        Assert.True(byQuery.Status == 200 && byQuery.Field("uri") == "/orders?page=2", agent.Explain($"a key in the query passes and is taken off the URI\n{byQuery}"));
        Assert.Equal(401, (await Call(key[..^2] + "xx")).Status);

        // Rotation with a grace: both keys pass; revoking the old one ends it on the spot.
        string oldId = key[4..20];
        CommandResult rotated = await agent.CliAsync("consumer", "rotate-key", "--name", "shop-app", "--key", oldId, "--grace", "1h");
        string newKey = rotated.Stdout.Trim();
        Assert.True(rotated.Succeeded && newKey != key, rotated.ToString());
        Assert.Equal((200, 200), ((await Call(key)).Status, (await Call(newKey)).Status));
        Assert.True((await agent.CliAsync("consumer", "revoke-key", "--name", "shop-app", "--key", oldId)).Succeeded);
        HttpAnswer revoked = await Call(key);
        Assert.True(revoked.Status == 401 && revoked.Body.Contains("revoked or expired", StringComparison.Ordinal), agent.Explain($"a revoked key: 401\n{revoked}"));

        // Disabled: 403, whatever the key; enabled again: served.
        Assert.True((await agent.CliAsync("consumer", "disable", "--name", "shop-app")).Succeeded);
        HttpAnswer disabled = await Call(newKey);
        Assert.True(disabled.Status == 403 && disabled.Body.Contains("consumer shop-app is disabled", StringComparison.Ordinal), agent.Explain($"disabled: 403\n{disabled}"));
        Assert.True((await agent.CliAsync("consumer", "enable", "--name", "shop-app")).Succeeded);

        // gold: 6 per hour per consumer. Four were served so far (header, query, both keys after the rotation); the
        // refused requests (a wrong key, a revoked key, while disabled) took no permit.
        int served = 4;
        HttpAnswer answer = await Call(newKey);
        while (answer.Status == 200 && served < 20)
        {
            served++;
            answer = await Call(newKey);
        }

        Assert.True(answer.Status == 429 && served == 6 && answer.Headers.GetValueOrDefault("ratelimit-policy") == "6;w=3600"
            && int.Parse(answer.Headers.GetValueOrDefault("retry-after") ?? "0", System.Globalization.CultureInfo.InvariantCulture) > 0
            && answer.Body.Contains("plan gold of consumer shop-app", StringComparison.Ordinal),
            agent.Explain($"gold allows 6 requests an hour; the 7th must be 429 with the plan named (served {served})\n{answer}"));

        // trial: a quota of 2 a day, until UTC midnight.
        Assert.True((await agent.CliAsync("consumer", "create", "--name", "trial-user", "--plan", "trial")).Succeeded);
        string trialKey = (await agent.CliAsync("consumer", "issue-key", "--name", "trial-user", "--expires-in", "30d")).Stdout.Trim();
        Assert.Equal((200, 200), ((await Call(trialKey)).Status, (await Call(trialKey)).Status));
        HttpAnswer quota = await Call(trialKey);
        TimeSpan untilMidnight = DateTime.UtcNow.Date.AddDays(1) - DateTime.UtcNow;
        long retryAfter = long.Parse(quota.Headers.GetValueOrDefault("retry-after") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(quota.Status == 429 && Math.Abs(retryAfter - untilMidnight.TotalSeconds) < 60 && quota.Body.Contains("daily quota of 2", StringComparison.Ordinal),
            agent.Explain($"the third request of the day: 429 until midnight UTC ({untilMidnight})\n{quota}"));

        // A client certificate mapped to a consumer; one the CA signed but no consumer claims is refused.
        Assert.True((await agent.CliAsync("consumer", "create", "--name", "partner", "--certificate", "dns:client.example.com")).Succeeded);
        string[] mtls = ["--cacert", $"{dir}/servers-ca.pem", "--resolve", "api.example.com:8443:10.231.0.1", "https://api.example.com:8443/"];
        HttpAnswer partner = await CurlAsync(mesh, ["--cert", $"{dir}/client.example.com.pem", "--key", $"{dir}/client.example.com.key", .. mtls]);
        Assert.True(partner.Status == 200 && partner.Field("env") == "partner", agent.Explain($"the partner's certificate names it\n{partner}"));
        HttpAnswer nobody = await CurlAsync(mesh, ["--cert", $"{dir}/other.example.com.pem", "--key", $"{dir}/other.example.com.key", .. mtls]);
        Assert.True(nobody.Status == 403 && nobody.Body.Contains("not one of a consumer", StringComparison.Ordinal), agent.Explain($"a certificate of no consumer: 403\n{nobody}"));

        // The listing counts today's requests; the admin API refuses a change without a JSON content type (no web page can send one).
        using (JsonDocument listing = JsonDocument.Parse((await agent.CliAsync("consumer", "list", "--json")).Stdout))
        {
            JsonElement trial = listing.RootElement.EnumerateArray().Single(c => c.GetProperty("name").GetString() == "trial-user");
            Assert.Equal((2, 2, 1), (trial.GetProperty("usage").GetProperty("requestsToday").GetInt32(), trial.GetProperty("usage").GetProperty("dailyQuota").GetInt32(),
                trial.GetProperty("usage").GetProperty("refused").GetInt32()));
            Assert.Equal(3, listing.RootElement.GetArrayLength());
        }

        CommandResult form = await mesh.Node(1).RunAsync("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "--data", "x", "http://127.0.0.1:15000/consumers/shop-app/disable");
        Assert.Equal("415", form.Stdout);
        CommandResult viaAdmin = await mesh.Node(1).RunAsync("curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "--data", "{}", "http://127.0.0.1:15000/consumers/partner/keys");
        using (JsonDocument adminKey = JsonDocument.Parse(viaAdmin.Stdout))
        {
            string partnerKey = adminKey.RootElement.GetProperty("apiKey").GetString()!;
            Assert.Equal(200, (await Call(partnerKey)).Status);
        }

        // A restart: consumers and keys, and the day's counts, come back from the state directory (a rate limit's
        // window starts afresh, as after a reload: only the quota is kept).
        await agent.RestartAsync();
        Assert.Equal(200, (await Call(newKey)).Status);
        Assert.Equal(401, (await Call(key)).Status);
        Assert.Equal(429, (await Call(trialKey)).Status);

        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_quota_exceeded_total", new Dictionary<string, string> { ["route"] = "api/0" }) >= 1,
            AgentMetrics.Describe(scrape, "nodemesh_gateway_quota"));
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_auth_refusals_total", new Dictionary<string, string> { ["route"] = "api/0", ["response_code"] = "401" }) >= 1,
            AgentMetrics.Describe(scrape, "nodemesh_gateway_auth"));
    }
}
