using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// Timeouts, retries and mirroring, seen from curl and from the agent's own account of them: every idempotent
/// request to a backend that fails every other request succeeds after one retry, a POST is never retried, a
/// backend slower than the rule's timeout gets 504 at the timeout, mirrors receive their share of requests; each
/// request has its access log line and its istio_requests_total series with the route, code and flags.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayResilienceTests(ITestOutputHelper output)
{
    private const string Routes = """
        {
          "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
          "httpRoutes": [
            { "name": "api", "hostnames": [ "api.example.com" ], "rules": [
                { "name": "slow", "matches": [ { "path": { "type": "PathPrefix", "value": "/slow" } } ], "timeouts": { "request": "1s" },
                  "backendRefs": [ { "name": "flaky", "port": 80 } ] },
                { "name": "retried", "retry": { "attempts": 2, "codes": [ 503 ], "backoff": "10ms" }, "backendRefs": [ { "name": "flaky", "port": 80 } ] } ] },
            { "name": "shadow", "hostnames": [ "shadow.example.com" ], "rules": [
                { "name": "all", "matches": [ { "path": { "type": "PathPrefix", "value": "/all" } } ],
                  "filters": [ { "type": "RequestMirror", "requestMirror": { "backendRef": { "name": "mirror", "port": 80 } } } ],
                  "backendRefs": [ { "name": "web", "port": 81 } ] },
                { "name": "half",
                  "filters": [ { "type": "RequestMirror", "requestMirror": { "backendRef": { "name": "mirror", "port": 80 }, "percent": 50 } } ],
                  "backendRefs": [ { "name": "web", "port": 81 } ] } ] }
          ]
        }
        """;

    [Fact]
    public async Task Retries_Timeouts_AndMirrors_DoWhatTheRuleSays_AndEveryRequestIsLoggedAndCounted()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 2, output);
        Pod flakyPod = mesh.Pod(1, 1), mirrorPod = mesh.Pod(1, 2);
        BackgroundProcess flaky = BackgroundProcess.Start(flakyPod, "/usr/bin/python3", TestPaths.GatewayScript("test-backend.py"), "80", "flaky", "alternate");
        BackgroundProcess mirror = BackgroundProcess.Start(mirrorPod, "/usr/bin/python3", TestPaths.GatewayScript("test-backend.py"), "80", "mirror", "ok");
        Assert.True(await flaky.WaitForOutputAsync("listening", TimeSpan.FromSeconds(15)) && await mirror.WaitForOutputAsync("listening", TimeSpan.FromSeconds(15)),
            $"backends did not start: {flaky.Output} {mirror.Output}");
        await NginxServer.StartAsync(flakyPod, "web", 81);
        var web = Service("web", 3, flakyPod);
        web.Ports = [new Config.ServicePortConfig { Port = 81 }];
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s =>
        {
            s.Customize = c =>
            {
                c.Services = [Service("flaky", 1, flakyPod), Service("mirror", 2, mirrorPod), web];
                c.Gateway = Parse(Routes);
            };
        });
        string[] resolve = ["--resolve", "api.example.com:8080:10.231.0.1", "--resolve", "shadow.example.com:8080:10.231.0.1"];

        // Every other request to flaky fails: each GET is answered after exactly one retry.
        const int Gets = 10;
        for (int i = 0; i < Gets; i++)
        {
            HttpAnswer get = await CurlAsync(mesh, [.. resolve, "http://api.example.com:8080/item"]);
            Assert.True(get is { Status: 200, ServedBy: "flaky" }, agent.Explain($"GET {i} must succeed on its retry\n{get}"));
        }

        // A POST is not idempotent: never retried, so of two in a row one fails.
        HttpAnswer[] posts = [await CurlAsync(mesh, [.. resolve, "-X", "POST", "-d", "x", "http://api.example.com:8080/item"]),
            await CurlAsync(mesh, [.. resolve, "-X", "POST", "-d", "x", "http://api.example.com:8080/item"])];
        Assert.True(posts.Count(p => p.Status == 503) == 1 && posts.Count(p => p.Status == 200) == 1,
            agent.Explain($"POSTs must not be retried: {string.Join(", ", posts.Select(p => p.Status))}"));

        // A backend slower than the rule's 1 s: 504 at about 1 s, not at the backend's 3 s.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        HttpAnswer slow = await CurlAsync(mesh, [.. resolve, "http://api.example.com:8080/slow?ms=3000"]);
        watch.Stop();
        Assert.True(slow.Status == 504, agent.Explain($"the request timeout must answer 504\n{slow}"));
        Assert.True(watch.Elapsed < TimeSpan.FromMilliseconds(2800), $"the timeout must cut the wait: {watch.Elapsed}");

        // Server-sent events pass through as they are sent: the first event is there a second in, the second (2 s later) is not.
        CommandResult events = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(10), "curl", [.. resolve, "-s", "-N", "--max-time", "1", "http://api.example.com:8080/events"]);
        Assert.True(events.Stdout.Contains("data: one", StringComparison.Ordinal) && !events.Stdout.Contains("data: two", StringComparison.Ordinal),
            agent.Explain($"an event stream must not be buffered: within 1 s curl got '{events.Stdout}'"));
        CommandResult whole = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(10), "curl", [.. resolve, "-s", "-N", "--max-time", "8", "http://api.example.com:8080/events"]);
        Assert.True(whole.Succeeded && whole.Stdout.Contains("data: two", StringComparison.Ordinal), agent.Explain($"the stream must end whole: {whole}"));

        // A long upload is streamed to the backend as it comes (4 MiB at 2 MiB/s: about 2 s between its first and last piece there).
        string upload = Path.Combine(mesh.WorkDir, "upload");
        await File.WriteAllBytesAsync(upload, new byte[4 * 1024 * 1024]);
        CommandResult sent = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(30), "curl", [.. resolve, "-s", "--max-time", "20", "--limit-rate", "2M", "-H", "Expect:",
            "--data-binary", "@" + upload, "http://api.example.com:8080/upload"]);
        System.Text.RegularExpressions.Match uploaded = System.Text.RegularExpressions.Regex.Match(sent.Stdout, @"upload bytes=(\d+) seconds=([\d.]+)");
        Assert.True(uploaded.Success && uploaded.Groups[1].Value == (4 * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture)
            && double.Parse(uploaded.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) > 1.0,
            agent.Explain($"the upload must reach the backend whole and as it is sent, not buffered: {sent}"));

        // Mirrors: all of /all, about half of the rest (binomial, 5 standard deviations either way).
        const int Mirrored = 20, Halved = 200;
        for (int i = 0; i < Mirrored; i++)
        {
            HttpAnswer all = await CurlAsync(mesh, [.. resolve, "http://shadow.example.com:8080/all"]);
            Assert.True(all is { Status: 200, ServedBy: "web" }, agent.Explain($"the primary answers, not the mirror\n{all}"));
        }

        await WaitForMirrorCountAsync(mesh, mirrorPod, Mirrored, agent);
        CommandResult many = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(60), "curl", ["-s", "-S", "--max-time", "50", .. resolve, .. Enumerable.Repeat("http://shadow.example.com:8080/half", Halved)]);
        Assert.Equal(Halved, many.Stdout.Split('\n').Count(l => l.StartsWith("served-by=web ", StringComparison.Ordinal)));
        await Task.Delay(500);
        int halfCopies = await MirrorCountAsync(mesh, mirrorPod) - Mirrored;
        Assert.True(halfCopies is >= 65 and <= 135, agent.Explain($"percent 50 of {Halved} requests: the mirror got {halfCopies}"));

        // The agent's account: access log lines and istio_requests_total by route, code and flags.
        Assert.True(await agent.WaitForOutputAsync($"request GET api.example.com:8080/item HTTP/1.1 route api/retried upstream flaky:80 endpoint {flakyPod.Name}: 200 -"),
            agent.Explain("each request must have its access log line"));
        Assert.Contains($"route api/slow upstream flaky:80 endpoint {flakyPod.Name}: 504 UT", agent.Output, StringComparison.Ordinal);
        // The bytes each way: the upload's whole body in; a GET none (it has no body to count).
        Assert.Contains($"request POST api.example.com:8080/upload HTTP/1.1 route api/retried upstream flaky:80 endpoint {flakyPod.Name}: 200 -; {4 * 1024 * 1024} bytes in, ",
            agent.Output, StringComparison.Ordinal);
        Assert.Contains($"request GET api.example.com:8080/item HTTP/1.1 route api/retried upstream flaky:80 endpoint {flakyPod.Name}: 200 -; 0 bytes in, ", agent.Output, StringComparison.Ordinal);
        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.WaitForAsync(mesh, 1, "/metrics",
            s => AgentMetrics.Value(s, "istio_requests_total", new Dictionary<string, string> { ["route"] = "shadow/half" }) == Halved);
        Dictionary<string, string> Labels(string route, string code, string flags) => new()
        {
            ["route"] = route, ["response_code"] = code, ["response_flags"] = flags, ["destination_service"] = "flaky:80",
            ["source_principal"] = GatewayIdentity, ["reporter"] = "source", ["connection_security_policy"] = "mutual_tls",
        };
        // The GETs, the POST that succeeded, the whole event stream and the upload; the stream curl left after 1 s is the client's doing (DC).
        Assert.Equal(Gets + 3, AgentMetrics.Value(scrape, "istio_requests_total", Labels("api/retried", "200", "-")));
        Assert.Equal(1, AgentMetrics.Value(scrape, "istio_requests_total", Labels("api/retried", "200", "DC")));
        Assert.Equal(1, AgentMetrics.Value(scrape, "istio_requests_total", Labels("api/retried", "503", "-")));
        Assert.Equal(1, AgentMetrics.Value(scrape, "istio_requests_total", Labels("api/slow", "504", "UT")));
        Assert.Equal(Gets, AgentMetrics.Value(scrape, "nodemesh_gateway_retries_total", new Dictionary<string, string> { ["route"] = "api/retried" }));
        Assert.Equal(Mirrored, AgentMetrics.Value(scrape, "nodemesh_gateway_mirrored_requests_total", new Dictionary<string, string> { ["route"] = "shadow/all", ["result"] = "sent" }));
        Assert.True(AgentMetrics.Value(scrape, "istio_request_duration_milliseconds_count", new Dictionary<string, string> { ["route"] = "api/slow" }) == 1,
            AgentMetrics.Describe(scrape, "istio_request_duration"));
    }

    private static async Task<int> MirrorCountAsync(Topology mesh, Pod mirror)
    {
        CommandResult count = await mirror.RunAsync("curl", "-s", "--max-time", "5", "http://127.0.0.1:80/count");
        return int.Parse(count.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static async Task WaitForMirrorCountAsync(Topology mesh, Pod mirror, int expected, AgentProcess agent)
    {
        int seen = 0;
        for (var watch = System.Diagnostics.Stopwatch.StartNew(); watch.Elapsed < TimeSpan.FromSeconds(10); await Task.Delay(100))
        {
            seen = await MirrorCountAsync(mesh, mirror);
            if (seen >= expected)
            {
                break;
            }
        }

        Assert.True(seen == expected, agent.Explain($"the mirror must receive every request of /all: {seen} of {expected}"));
    }
}
