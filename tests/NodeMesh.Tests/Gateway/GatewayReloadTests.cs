using System.Text.RegularExpressions;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// Routes reloaded from the configuration file while h2load keeps 10 connections busy and a WebSocket is open
/// through the gateway: not one request fails, the new routes take the traffic after the swap, the WebSocket on
/// a route the reload kept goes on without a reconnect (nginx-based gateways drop it on every reload), and a
/// file that does not validate changes nothing.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed partial class GatewayReloadTests(ITestOutputHelper output)
{
    private static string Gateway(string rootBackend) => $$"""
        {
          "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 }, { "name": "h2c", "address": "10.231.0.1", "port": 8081, "protocol": "H2c" } ],
          "httpRoutes": [
            { "name": "ws", "rules": [ { "matches": [ { "path": { "type": "PathPrefix", "value": "/ws" } } ], "backendRefs": [ { "name": "ws", "port": 8765 } ] } ] },
            { "name": "root", "rules": [ { "backendRefs": [ { "name": "{{rootBackend}}", "port": 80 } ] } ] }
          ]
        }
        """;

    [Fact]
    public async Task RoutesReloadedUnderLoad_FailNoRequest_AndKeepAWebSocketOpen()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod v1 = mesh.Pod(1, 1), ws = mesh.Pod(1, 2), v2 = mesh.Pod(2, 1);
        await NginxServer.StartAsync(v1, "v1", 80);
        await NginxServer.StartAsync(v2, "v2", 80);
        BackgroundProcess echo = BackgroundProcess.Start(ws, "/usr/bin/python3", TestPaths.GatewayScript("ws-echo-server.py"), "8765", "ws");
        Assert.True(await echo.WaitForOutputAsync("listening", TimeSpan.FromSeconds(15)), $"the WebSocket server did not start: {echo.Output}");

        var services = new List<Config.ServiceConfig> { Service("v1", 1, v1), Service("v2", 2, v2), Service("ws", 3, ws) };
        services[2].Ports = [new Config.ServicePortConfig { Port = 8765 }];
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = c => c.Services = services);
        AgentProcess gateway = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = services;
            c.Gateway = Parse(Gateway("v1"));
        });
        HttpAnswer before = await CurlAsync(mesh, "http://10.231.0.1:8080/");
        Assert.True(before.ServedBy == "v1", gateway.Explain($"before the reload / goes to v1\n{before}"));

        string counter = Path.Combine(mesh.WorkDir, "ws-count"), stop = Path.Combine(mesh.WorkDir, "ws-stop");
        BackgroundProcess client = BackgroundProcess.Start(mesh.Ext, "/usr/bin/python3", TestPaths.GatewayScript("ws-client.py"), "ws://10.231.0.1:8080/ws", counter, stop);
        Assert.True(await client.WaitForOutputAsync("open", TimeSpan.FromSeconds(15)), gateway.Explain($"the WebSocket did not open through the gateway: {client.Output}"));
        await WaitForCountAsync(counter, 5, client);

        // h2load over h2c: 10 connections, 10 streams each, a fixed number of requests (its duration mode counts the
        // requests it cuts off at the end as failed); the routes are swapped while it runs.
        Task<CommandResult> load = mesh.Ext.RunAsync(TimeSpan.FromSeconds(90), "h2load", "-n", "30000", "-c", "10", "-m", "10", "-t", "1", "http://10.231.0.1:8081/");
        await Task.Delay(TimeSpan.FromSeconds(1));
        int beforeReload = ReadCount(counter);

        // A file that does not validate first: refused, nothing changes.
        gateway.RewriteConfig(c => c.Gateway = Parse(Gateway("NOT A NAME")));
        Assert.True(await gateway.WaitForOutputAsync("configuration reload from", TimeSpan.FromSeconds(10)), gateway.Explain("a broken file must be refused, saying so"));
        Assert.Contains("gateway.httpRoutes[1].rules[0].backendRefs[0].name", gateway.Output, StringComparison.Ordinal);

        gateway.RewriteConfig(c => c.Gateway = Parse(Gateway("v2")));
        Assert.True(await gateway.WaitForOutputAsync("2 gateway routes", TimeSpan.FromSeconds(10)), gateway.Explain("the routes must be reloaded"));
        Assert.False(load.IsCompleted, "the load ended before the reload: the test proves nothing (give h2load more requests)");

        CommandResult h2load = await load;
        output.WriteLine(h2load.Stdout);
        Match summary = RequestsLine().Match(h2load.Stdout);
        Assert.True(summary.Success, $"no h2load summary\n{h2load}");
        long total = long.Parse(summary.Groups["total"].Value, System.Globalization.CultureInfo.InvariantCulture);
        long failed = long.Parse(summary.Groups["failed"].Value, System.Globalization.CultureInfo.InvariantCulture);
        long errored = long.Parse(summary.Groups["errored"].Value, System.Globalization.CultureInfo.InvariantCulture);
        Match codes = StatusLine().Match(h2load.Stdout);
        Assert.True(total > 500 && failed == 0 && errored == 0, gateway.Explain($"no request may fail across the reload: {summary.Value}"));
        Assert.True(codes.Success && codes.Groups["ok"].Value == summary.Groups["total"].Value, gateway.Explain($"every request must be answered 2xx: {codes.Value}"));

        HttpAnswer after = await CurlAsync(mesh, "http://10.231.0.1:8080/");
        Assert.True(after.ServedBy == "v2", gateway.Explain($"after the reload / goes to v2\n{after}"));

        // The WebSocket went on through both reloads, on its first connection.
        await WaitForCountAsync(counter, beforeReload + 20, client);
        await File.WriteAllTextAsync(stop, "");
        int exit = await client.WaitForExitAsync(TimeSpan.FromSeconds(15));
        Assert.True(exit == 0 && client.Output.Contains("closed cleanly", StringComparison.Ordinal), gateway.Explain($"the WebSocket must survive the reload: {client.Output}"));
    }

    private static int ReadCount(string path) => File.Exists(path) && int.TryParse(File.ReadAllText(path), out int n) ? n : 0;

    private static async Task WaitForCountAsync(string counter, int atLeast, BackgroundProcess client)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (ReadCount(counter) < atLeast)
        {
            Assert.False(client.HasExited, $"the WebSocket client ended: {client.Output}");
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"only {ReadCount(counter)} WebSocket round trips of {atLeast}: {client.Output}");
            await Task.Delay(100);
        }
    }

    // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"
    [GeneratedRegex(@"requests: (?<total>\d+) total, \d+ started, \d+ done, \d+ succeeded, (?<failed>\d+) failed, (?<errored>\d+) errored")]
    private static partial Regex RequestsLine();

    // "status codes: 1000 2xx, 0 3xx, 0 4xx, 0 5xx"
    [GeneratedRegex(@"status codes: (?<ok>\d+) 2xx")]
    private static partial Regex StatusLine();
}
