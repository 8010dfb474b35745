using System.Net.Sockets;
using System.Text.Json;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The operator's HTTP ports: the admin API and status page on 127.0.0.1:15000 of the node (never reachable
/// from elsewhere, nor through another port), readiness and liveness on 15021, and readiness following what the
/// agent can serve, down as soon as it starts draining.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class AdminApiTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;

    [Fact]
    public async Task AdminApi_ShowsWorkloadsCertificatesPoliciesFlowsAndConfig_ChangesTheLogLevel_AndServesOnlyLoopback()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentAsync(mesh.Node(1));
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Modes[server.Name] = "STRICT");
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult mesh1 = await client.ProbeAsync(echo.EndPoint, "through the mesh");
        Assert.True(mesh1.Outcome == ProbeOutcome.Answered, mesh.Explain($"mesh probe: {mesh1}"));
        ProbeResult plaintext = await mesh.Ext.ProbeAsync(echo.EndPoint, "plaintext to a STRICT pod");
        Assert.True(plaintext.Outcome != ProbeOutcome.Answered, mesh.Explain($"plaintext to STRICT: {plaintext}"));
        Node node2 = mesh.Node(2);

        using JsonDocument workloads = await GetJsonAsync(mesh, node2, "/workloads");
        JsonElement workload = Assert.Single(workloads.RootElement.EnumerateArray());
        Assert.Equal(server.Name, workload.GetProperty("name").GetString());
        Assert.Equal("STRICT", workload.GetProperty("mode").GetString());
        Assert.StartsWith("valid until", workload.GetProperty("certificate").GetString(), StringComparison.Ordinal);

        using JsonDocument certificates = await GetJsonAsync(mesh, node2, "/certificates");
        var byIdentity = certificates.RootElement.EnumerateArray().ToDictionary(c => c.GetProperty("identity").GetString()!);
        foreach (string identity in new[] { server.Identity, "spiffe://cluster.local/ns/nodemesh-system/sa/node.node2" })
        {
            Assert.True(byIdentity.TryGetValue(identity, out JsonElement c), $"no certificate for {identity}: {certificates.RootElement}");
            Assert.Equal("valid", c.GetProperty("state").GetString());
            Assert.Matches("^[0-9A-F]+$", c.GetProperty("serial").GetString());
            Assert.Contains("CN=", c.GetProperty("issuer").GetString(), StringComparison.Ordinal);
            Assert.True(c.GetProperty("notBefore").GetDateTimeOffset() < c.GetProperty("notAfter").GetDateTimeOffset());
        }

        using JsonDocument flows = await GetJsonAsync(mesh, node2, "/flows");
        Assert.Contains(flows.RootElement.EnumerateArray(), f => f.GetProperty("outcome").GetString() == "Denied" && f.GetProperty("path").GetString() == "plaintext");
        Assert.Contains(flows.RootElement.EnumerateArray(), f => f.GetProperty("outcome").GetString() == "Ok" && f.GetProperty("sourceIdentity").GetString() == client.Identity);
        using JsonDocument status = await GetJsonAsync(mesh, node2, "/status");
        Assert.Equal("node2", status.RootElement.GetProperty("node").GetString());
        using JsonDocument config = await GetJsonAsync(mesh, node2, "/config_dump");
        Assert.Equal("node2", config.RootElement.GetProperty("node").GetProperty("name").GetString());
        using JsonDocument tunnels = await GetJsonAsync(mesh, node2, "/tunnels");
        Assert.Contains(tunnels.RootElement.GetProperty("listener").GetProperty("accepted").EnumerateArray(), c => c.GetProperty("peerIdentity").GetString() == client.Identity);
        using JsonDocument outbound = await GetJsonAsync(mesh, mesh.Node(1), "/tunnels");
        JsonElement peer = Assert.Single(outbound.RootElement.GetProperty("peers").EnumerateArray(), p => p.GetProperty("node").GetString() == "node2");
        Assert.True(peer.GetProperty("connections").GetInt32() >= 1, outbound.RootElement.ToString());
        using JsonDocument policies = await GetJsonAsync(mesh, node2, "/policies");
        Assert.Equal(JsonValueKind.Array, policies.RootElement.ValueKind);

        // The log level changes at run time; a bad one is a 400 naming what is wrong.
        CommandResult debug = await node2.RunAsync("curl", "-sS", "-X", "POST", "-w", "\n%{http_code}", "http://127.0.0.1:15000/logging?level=debug");
        Assert.EndsWith("200", debug.Stdout.Trim(), StringComparison.Ordinal);
        using JsonDocument level = await GetJsonAsync(mesh, node2, "/logging");
        Assert.Equal("Debug", level.RootElement.GetProperty("level").GetString());
        CommandResult loud = await node2.RunAsync("curl", "-sS", "-X", "POST", "-w", "\n%{http_code}", "http://127.0.0.1:15000/logging?level=loud");
        Assert.EndsWith("400", loud.Stdout.Trim(), StringComparison.Ordinal);
        Assert.Contains("level: 'loud' is not one of", loud.Stdout, StringComparison.Ordinal);
        Assert.True(await mesh.Agent(2).WaitForOutputAsync("log level set to Debug"), mesh.Explain("the level change is logged"));

        // Loopback only: not from the LAN, and not through the public readiness port whatever the Host header says.
        CommandResult fromLan = await mesh.Ext.RunAsync("curl", "-sS", "--max-time", "3", $"http://{node2.Ip}:15000/status");
        Assert.NotEqual(0, fromLan.ExitCode);
        CommandResult throughReadiness = await mesh.Ext.RunAsync("curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", "Host: 127.0.0.1:15000", $"http://{node2.Ip}:15021/config_dump");
        Assert.Equal("404", throughReadiness.Stdout.Trim());
        CommandResult ready = await mesh.Ext.RunAsync("curl", "-sS", "--max-time", "3", "-w", "\n%{http_code}", $"http://{node2.Ip}:15021/healthz/ready");
        Assert.True(ready.Stdout.Trim().EndsWith("200", StringComparison.Ordinal) && ready.Stdout.Contains("\"ready\": true", StringComparison.Ordinal), ready.Stdout);
        CommandResult live = await mesh.Ext.RunAsync("curl", "-sS", "--max-time", "3", $"http://{node2.Ip}:15021/healthz/live");
        Assert.Equal("ok", live.Stdout.Trim());
    }

    [Fact]
    public async Task Readiness_GoesTo503AtTheStartOfTheDrain_SayingWhy_WhileTheOpenFlowFinishes()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentAsync(mesh.Node(1));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.DrainTimeout = TimeSpan.FromSeconds(8));
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);
        using Socket open = await mesh.Pod(1, 1).ConnectAsync(echo.EndPoint);
        StreamResult sent = await open.SendAllAsync(TestData.Ascii("hold"), TimeSpan.FromSeconds(10), shutdownAfter: false);
        Assert.Equal(4, (await open.ReceiveExactlyAsync(4, TimeSpan.FromSeconds(10))).Bytes);
        Assert.Equal(StreamEnd.CleanEof, sent.End);

        await Command.RunCheckedAsync(TimeSpan.FromSeconds(5), "kill", "-TERM", node2.Pid!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        string answer = "";
        for (DateTime end = DateTime.UtcNow + TimeSpan.FromSeconds(5); DateTime.UtcNow < end; await Task.Delay(100))
        {
            CommandResult ready = await mesh.Ext.RunAsync("curl", "-sS", "--max-time", "2", "-w", "\n%{http_code}", $"http://{mesh.Node(2).Ip}:15021/healthz/ready");
            answer = ready.Stdout;
            if (answer.Trim().EndsWith("503", StringComparison.Ordinal))
            {
                break;
            }
        }

        Assert.True(answer.Trim().EndsWith("503", StringComparison.Ordinal), mesh.Explain($"readiness while draining: {answer}"));
        Assert.Contains("stopping", answer, StringComparison.Ordinal);
        Assert.True(node2.IsRunning, "the agent still drains its open flow");
        open.Shutdown(SocketShutdown.Send);
        await open.ReadToEndAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, await node2.StopAsync());
    }

    [Fact]
    public async Task StatusPage_RenderedByHeadlessChromium_ShowsWhatTheApiReturns()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentAsync(mesh.Node(1));
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Modes[server.Name] = "STRICT");
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        Assert.Equal(ProbeOutcome.Answered, (await client.ProbeAsync(echo.EndPoint, "through the mesh")).Outcome);
        Assert.NotEqual(ProbeOutcome.Answered, (await mesh.Ext.ProbeAsync(echo.EndPoint, "plaintext to a STRICT pod")).Outcome);
        Node node2 = mesh.Node(2);

        // The page fetches the API and renders it; --dump-dom prints the DOM after its scripts ran.
        string profile = Path.Combine(mesh.WorkDir, "chromium-profile");
        CommandResult chromium = await node2.RunAsync(TimeSpan.FromSeconds(60), "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", $"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", "http://127.0.0.1:15000/");
        Assert.True(chromium.ExitCode == 0, $"chromium: {chromium.Stderr}");
        string dom = chromium.Stdout;
        Assert.Contains("data-rendered=\"yes\"", dom, StringComparison.Ordinal);
        Assert.Contains("NodeMesh agent <span id=\"node\">node2</span>", dom, StringComparison.Ordinal);

        using JsonDocument workloads = await GetJsonAsync(mesh, node2, "/workloads");
        foreach (JsonElement w in workloads.RootElement.EnumerateArray())
        {
            Assert.Contains($"<tr data-key=\"{w.GetProperty("name").GetString()}\"><td>{w.GetProperty("name").GetString()}</td><td>{w.GetProperty("ip").GetString()}</td><td>{w.GetProperty("identity").GetString()}</td><td>STRICT</td>", dom, StringComparison.Ordinal);
        }

        using JsonDocument certificates = await GetJsonAsync(mesh, node2, "/certificates");
        foreach (JsonElement c in certificates.RootElement.EnumerateArray())
        {
            Assert.Contains($"<td>{c.GetProperty("serial").GetString()}</td>", dom, StringComparison.Ordinal);
        }

        using JsonDocument flows = await GetJsonAsync(mesh, node2, "/flows");
        JsonElement denied = Assert.Single(flows.RootElement.EnumerateArray(), f => f.GetProperty("outcome").GetString() == "Denied");
        string denials = dom[dom.IndexOf("<table id=\"denials\">", StringComparison.Ordinal)..dom.IndexOf("<table id=\"flows\">", StringComparison.Ordinal)];
        Assert.Contains($"<td>{denied.GetProperty("source").GetString()}</td>", denials, StringComparison.Ordinal);
        // Text in the DOM has &, < and > escaped (quotes are not).
        string result = denied.GetProperty("result").GetString()!.Replace("&", "&amp;", StringComparison.Ordinal)
            .Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal);
        Assert.Contains(result, denials, StringComparison.Ordinal);
    }

    private static async Task<JsonDocument> GetJsonAsync(Topology mesh, Node node, string path)
    {
        CommandResult curl = await node.RunAsync("curl", "-sS", "--fail", "--max-time", "5", $"http://127.0.0.1:15000{path}");
        Assert.True(curl.ExitCode == 0, mesh.Explain($"GET {path} on {node.Name}: {curl.Stderr}"));
        return JsonDocument.Parse(curl.Stdout);
    }
}
