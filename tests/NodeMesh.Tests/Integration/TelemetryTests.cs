using System.Net.Sockets;
using NodeMesh.Config;
using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The agents' metrics as operators read them: Prometheus text on ports.metrics with the names and labels of
/// Istio's TCP metrics (bytes counted while a flow runs, series dropped with their workload), scraped by curl
/// and by a real Prometheus server, and OTLP export over gRPC and HTTP/protobuf to a receiver that decodes
/// the published OTLP definitions.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class TelemetryTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = AgentMetrics.Patience;
    private const int EchoPort = 7000;
    private const int Payload = 300_000;
    private const string FlowRecorderCategory = "NodeMesh.AccessLog";

    [Fact]
    public async Task PrometheusScrape_HasIstioTcpSeriesOnBothAgents_CountsBytesWhileTheFlowRuns_AndDropsARemovedWorkload()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        var labels = new Dictionary<string, string>
        {
            ["source_workload"] = client.Name,
            ["source_workload_namespace"] = "test",
            ["source_principal"] = client.Identity,
            ["destination_workload"] = server.Name,
            ["destination_workload_namespace"] = "test",
            ["destination_principal"] = server.Identity,
            ["connection_security_policy"] = "mutual_tls",
        };
        Dictionary<string, string> As(string reporter, string? flags = null)
        {
            var l = new Dictionary<string, string>(labels) { ["reporter"] = reporter };
            if (flags is not null)
            {
                l["response_flags"] = flags;
            }

            return l;
        }

        using (Socket flow = await client.ConnectAsync(echo.EndPoint))
        {
            byte[] data = TestData.RandomBytes(Payload);
            StreamResult sent = await flow.SendAllAsync(data, Patience, shutdownAfter: false);
            StreamResult echoed = await flow.ReceiveExactlyAsync(Payload, Patience);
            Assert.True(sent.Bytes == Payload && echoed.Bytes == Payload, mesh.Explain($"echo through the mesh: {sent} / {echoed}"));

            // The flow is still open: its bytes are counted already, on both agents, each as the side it serves.
            foreach ((int node, string reporter) in new[] { (1, "source"), (2, "destination") })
            {
                IReadOnlyList<PrometheusSample> scrape = await WaitForAsync(mesh, node, "/metrics",
                    s => Value(s, "istio_tcp_received_bytes_total", As(reporter)) >= Payload && Value(s, "istio_tcp_sent_bytes_total", As(reporter)) >= Payload);
                string seen = Describe(scrape);
                Assert.True(Value(scrape, "istio_tcp_received_bytes_total", As(reporter)) == Payload, $"node{node}: request bytes while open\n{seen}");
                Assert.True(Value(scrape, "istio_tcp_sent_bytes_total", As(reporter)) == Payload, $"node{node}: response bytes while open\n{seen}");
                Assert.True(Value(scrape, "istio_tcp_connections_opened_total", As(reporter, "-")) == 1, $"node{node}: opened\n{seen}");
                Assert.True(Value(scrape, "istio_tcp_connections_closed_total", As(reporter)) is null, $"node{node}: nothing closed yet\n{seen}");
            }

            flow.Shutdown(SocketShutdown.Send);
            StreamResult rest = await flow.ReadToEndAsync(Patience);
            Assert.Equal(StreamEnd.CleanEof, rest.End);
        }

        foreach ((int node, string reporter) in new[] { (1, "source"), (2, "destination") })
        {
            // Istio's scrape configs read /stats/prometheus: the same exposition.
            IReadOnlyList<PrometheusSample> scrape = await WaitForAsync(mesh, node, "/stats/prometheus",
                s => Value(s, "istio_tcp_connections_closed_total", As(reporter, "-")) == 1);
            Assert.True(Value(scrape, "istio_tcp_received_bytes_total", As(reporter)) == Payload, $"node{node}: request bytes after the end\n{Describe(scrape)}");
            Assert.True(Value(scrape, "istio_tcp_sent_bytes_total", As(reporter)) == Payload, $"node{node}: response bytes after the end\n{Describe(scrape)}");
        }

        // A refused flow (nothing listens on the port) is opened and closed with its response flag.
        ProbeResult refused = await client.ProbeAsync(server.EndPoint(EchoPort + 1), "anyone?");
        Assert.True(refused.Outcome != ProbeOutcome.Answered, mesh.Explain($"a probe of a closed port: {refused}"));

        await WaitForAsync(mesh, 1, "/metrics", s => Value(s, "istio_tcp_connections_closed_total", As("source", "UF")) == 1);

        // The agent's own state as gauges, and a config reload counted.
        mesh.Agent(1).RewriteConfig(c => c.DrainTimeout = TimeSpan.FromSeconds(2));
        IReadOnlyList<PrometheusSample> own = await WaitForAsync(mesh, 1, "/metrics", s => Value(s, "nodemesh_config_reloads_total", new Dictionary<string, string> { ["result"] = "applied" }) == 1);
        string ownSeen = string.Join('\n', own.Where(x => x.Name.StartsWith("nodemesh_", StringComparison.Ordinal)));
        Assert.True(Value(own, "nodemesh_workloads_captured", new Dictionary<string, string>()) == 1, ownSeen);
        Assert.True(Value(own, "nodemesh_tunnel_connections", new Dictionary<string, string> { ["direction"] = "outbound" }) >= 1, ownSeen);
        Assert.True(Value(own, "nodemesh_peer_reachable", new Dictionary<string, string> { ["peer"] = "node2" }) == 1, ownSeen);
        Assert.True(Value(own, "nodemesh_certificate_expiry_seconds", new Dictionary<string, string> { ["identity"] = client.Identity }) > 60, ownSeen);
        Assert.True(Value(own, "nodemesh_flows_refused_total", new Dictionary<string, string> { ["reason"] = "refused" }) == 1, ownSeen);

        // The client workload goes: its series go with it; the server's side stays on node2.
        CommandResult removed = await mesh.Agent(1).WorkloadRemoveAsync(client);
        Assert.True(removed.ExitCode == 0, mesh.Explain($"workload remove: {removed.Stderr}"));
        IReadOnlyList<PrometheusSample> after = await WaitForAsync(mesh, 1, "/metrics", s => !s.Any(x => x.Name.StartsWith("istio_tcp_", StringComparison.Ordinal)));
        Assert.DoesNotContain(after, x => x.Labels.GetValueOrDefault("source_workload") == client.Name);
        IReadOnlyList<PrometheusSample> node2 = await ScrapeAsync(mesh, 2, "/metrics");
        Assert.True(Value(node2, "istio_tcp_connections_closed_total", As("destination", "-")) == 1, Describe(node2));
        // The receiving agent counts the allow and the policy that made it (none selects the server: default-allow).
        Assert.True(Value(node2, "nodemesh_authz_decisions_total", new Dictionary<string, string>
        {
            ["decision"] = "allow", ["policy"] = "default-allow", ["destination_workload"] = server.Name,
        }) >= 1, AgentMetrics.Describe(node2, "nodemesh_authz"));

        // The access log is off unless logging.accessLog turns it on.
        Assert.DoesNotContain(FlowRecorderCategory, mesh.Agent(1).Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PrometheusServer_ScrapesBothAgents_AndItsApiShowsTheSeriesWithTheirLabels()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult probe = await client.ProbeAsync(echo.EndPoint, "hello prometheus");
        Assert.True(probe.Outcome == ProbeOutcome.Answered, mesh.Explain($"probe: {probe}"));

        await using PrometheusServer prometheus = await PrometheusServer.StartAsync(mesh, [mesh.Node(1).EndPoint(15020), mesh.Node(2).EndPoint(15020)]);
        IReadOnlyList<PrometheusServer.Series> series = await prometheus.WaitForSeriesAsync(
            "istio_tcp_connections_closed_total", s => s.Count(x => x.Labels.GetValueOrDefault("response_flags") == "-") >= 2, Patience);
        foreach ((string reporter, int node) in new[] { ("source", 1), ("destination", 2) })
        {
            PrometheusServer.Series one = Assert.Single(series, s => s.Labels.GetValueOrDefault("reporter") == reporter);
            Assert.Equal(mesh.Node(node).EndPoint(15020).ToString(), one.Labels["instance"]);
            Assert.Equal(client.Name, one.Labels["source_workload"]);
            Assert.Equal(server.Identity, one.Labels["destination_principal"]);
            Assert.Equal("mutual_tls", one.Labels["connection_security_policy"]);
            Assert.Equal(1, one.Value);
        }
    }

    [Fact]
    public async Task OtlpExport_OverGrpcFromConfig_AndHttpProtobufFromTheOtelVariables_CarriesTheIstioSeries()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        (Socket grpc, Socket http) = await mesh.Ext.InNamespaceAsync(() => (Listen(4317), Listen(4318)));
        await using OtlpReceiver receiver = await OtlpReceiver.StartAsync(grpc, http);

        // node1 from its config file; node2 from the standard variables alone.
        await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c => c.Telemetry.Otlp = new OtlpConfig
        {
            Endpoint = $"http://{mesh.Ext.Ip}:4317",
            Protocol = OtlpProtocol.Grpc,
            ExportInterval = TimeSpan.FromMilliseconds(500),
        });
        await mesh.StartAgentAsync(mesh.Node(2), s =>
        {
            s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = $"http://{mesh.Ext.Ip}:4318";
            s.Environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
            s.Environment["OTEL_METRIC_EXPORT_INTERVAL"] = "500";
            s.Environment["OTEL_SERVICE_NAME"] = "nodemesh-node2";
            s.Environment["OTEL_RESOURCE_ATTRIBUTES"] = "deployment.environment=test";
        });
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult probe = await client.ProbeAsync(echo.EndPoint, "hello otlp");
        Assert.True(probe.Outcome == ProbeOutcome.Answered, mesh.Explain($"probe: {probe}"));
        long request = "hello otlp".Length;

        foreach ((string protocol, string reporter) in new[] { ("grpc", "source"), ("http/protobuf", "destination") })
        {
            var labels = new Dictionary<string, string>
            {
                ["reporter"] = reporter,
                ["source_workload"] = client.Name,
                ["destination_principal"] = server.Identity,
                ["connection_security_policy"] = "mutual_tls",
                ["response_flags"] = "-",
            };
            bool arrived = await Eventually(() => receiver.LatestSum(protocol, "istio_tcp_connections_closed_total", labels) == 1
                && receiver.LatestSum(protocol, "istio_tcp_received_bytes_total", labels) == request);
            Assert.True(arrived, mesh.Explain($"{protocol}: closed {receiver.LatestSum(protocol, "istio_tcp_connections_closed_total", labels)}, " +
                $"received bytes {receiver.LatestSum(protocol, "istio_tcp_received_bytes_total", labels)} (want 1, {request}); metrics seen: {receiver.Names(protocol)}"));
        }

        IReadOnlyDictionary<string, string> node1 = receiver.ResourceAttributes("grpc");
        Assert.Equal("nodemesh", node1.GetValueOrDefault("service.name"));
        Assert.Equal("node1", node1.GetValueOrDefault("host.name"));
        IReadOnlyDictionary<string, string> node2 = receiver.ResourceAttributes("http/protobuf");
        Assert.Equal("nodemesh-node2", node2.GetValueOrDefault("service.name"));
        Assert.Equal("test", node2.GetValueOrDefault("deployment.environment"));
    }

    [Fact]
    public async Task OtlpTracesAndLogs_ASpanPerFlowOnBothAgents_TheReceiversTheChildOfTheSenders_AndOneAccessLogRecordPerFlow_TextOrJson()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        (Socket grpc, Socket http) = await mesh.Ext.InNamespaceAsync(() => (Listen(4317), Listen(4318)));
        await using OtlpReceiver receiver = await OtlpReceiver.StartAsync(grpc, http);
        foreach (int node in new[] { 1, 2 })
        {
            await mesh.StartAgentAsync(mesh.Node(node), s =>
            {
                s.Customize = c =>
                {
                    c.Telemetry.Otlp = new OtlpConfig { Endpoint = $"http://{mesh.Ext.Ip}:4317", Protocol = OtlpProtocol.Grpc };
                    c.Logging.Format = node == 2 ? LogFormat.Json : LogFormat.Text;
                    c.Logging.AccessLog = true;
                };
                s.Environment["OTEL_BSP_SCHEDULE_DELAY"] = "200";
                s.Environment["OTEL_BLRP_SCHEDULE_DELAY"] = "200";
            });
        }

        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer echo = await server.StartTcpServerAsync(EchoPort, ServerMode.Echo);
        ProbeResult probe = await client.ProbeAsync(echo.EndPoint, "hello traces");
        Assert.True(probe.Outcome == ProbeOutcome.Answered, mesh.Explain($"probe: {probe}"));

        static string? Attribute(IEnumerable<OpenTelemetry.Proto.Common.V1.KeyValue> attributes, string key) =>
            attributes.FirstOrDefault(a => a.Key == key)?.Value.StringValue;
        bool spans = await Eventually(() => receiver.Spans.Any(s => s.Span.Name == "flow outbound") && receiver.Spans.Any(s => s.Span.Name == "flow inbound"));
        string seen = string.Join("; ", receiver.Spans.Select(s => $"{s.Span.Name} trace {s.Span.TraceId.ToBase64()} span {s.Span.SpanId.ToBase64()} parent {s.Span.ParentSpanId.ToBase64()}"));
        Assert.True(spans, mesh.Explain($"spans received: {seen}"));
        OpenTelemetry.Proto.Trace.V1.Span sender = Assert.Single(receiver.Spans, s => s.Span.Name == "flow outbound").Span;
        OpenTelemetry.Proto.Trace.V1.Span receiving = Assert.Single(receiver.Spans, s => s.Span.Name == "flow inbound").Span;
        Assert.Equal(sender.TraceId, receiving.TraceId);
        Assert.Equal(sender.SpanId, receiving.ParentSpanId);
        Assert.True(sender.ParentSpanId.IsEmpty, $"the sender's span is a root: {seen}");
        Assert.Equal(OpenTelemetry.Proto.Trace.V1.Span.Types.SpanKind.Client, sender.Kind);
        Assert.Equal(OpenTelemetry.Proto.Trace.V1.Span.Types.SpanKind.Server, receiving.Kind);
        foreach (OpenTelemetry.Proto.Trace.V1.Span span in new[] { sender, receiving })
        {
            Assert.Equal(client.Identity, Attribute(span.Attributes, "nodemesh.source_principal"));
            Assert.Equal(server.Identity, Attribute(span.Attributes, "nodemesh.destination_principal"));
            Assert.Equal("-", Attribute(span.Attributes, "nodemesh.response_flags"));
        }

        // One access record per flow and agent, exported with its fields, and on standard output as text or JSON.
        bool logs = await Eventually(() => receiver.Logs.Count(l => l.Record.Body.StringValue.StartsWith("flow ", StringComparison.Ordinal)) >= 2);
        Assert.True(logs, mesh.Explain($"log records received: {string.Join("; ", receiver.Logs.Select(l => l.Record.Body.StringValue))}"));
        var access = receiver.Logs.Where(l => l.Record.Body.StringValue.StartsWith("flow ", StringComparison.Ordinal)).Select(l => l.Record).ToList();
        Assert.Equal(2, access.Count);
        Assert.All(access, r => Assert.Equal(server.Identity, Attribute(r.Attributes, "DestinationPrincipal")));
        Assert.Contains(access, r => r.Body.StringValue.StartsWith("flow outbound tunnel", StringComparison.Ordinal));
        Assert.Contains(access, r => r.Body.StringValue.StartsWith("flow inbound tunnel", StringComparison.Ordinal));

        string text = mesh.Agent(1).Output;
        Assert.Contains($"flow outbound tunnel {client.Ip}", text, StringComparison.Ordinal);
        string json = Assert.Single(mesh.Agent(2).Output.Split('\n'), l => l.Contains("\"NodeMesh.AccessLog\"", StringComparison.Ordinal));
        using System.Text.Json.JsonDocument line = System.Text.Json.JsonDocument.Parse(json[json.IndexOf('{', StringComparison.Ordinal)..]);
        Assert.Equal(client.Identity, line.RootElement.GetProperty("State").GetProperty("SourcePrincipal").GetString());
        Assert.Equal("ok", line.RootElement.GetProperty("State").GetProperty("Result").GetString());
        foreach (AgentProcess agent in new[] { mesh.Agent(1), mesh.Agent(2) })
        {
            Assert.DoesNotContain("Press Ctrl+C", agent.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task GatewayRequest_HasASpan_ChildOfTheClients_ParentOfTheBackendsAndOfTheReceivingAgentsFlow()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        (Socket grpc, Socket http) = await mesh.Ext.InNamespaceAsync(() => (Listen(4317), Listen(4318)));
        await using OtlpReceiver receiver = await OtlpReceiver.StartAsync(grpc, http);
        Pod web = mesh.Pod(2, 1);
        await NginxServer.StartAsync(web, "web", 80, keepalive: false);
        List<ServiceConfig> services = [Gateway.GatewayFixture.Service("web", 1, web)];
        foreach (int node in new[] { 2, 1 })
        {
            await mesh.StartAgentAsync(mesh.Node(node), s =>
            {
                s.Customize = c =>
                {
                    c.Telemetry.Otlp = new OtlpConfig { Endpoint = $"http://{mesh.Ext.Ip}:4317", Protocol = OtlpProtocol.Grpc };
                    c.Services = services;
                    if (node == 1)
                    {
                        c.Gateway = Gateway.GatewayFixture.Parse("""
                            { "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
                              "httpRoutes": [ { "name": "all", "rules": [ { "name": "web", "backendRefs": [ { "name": "web", "port": 80 } ] } ] } ] }
                            """);
                    }
                };
                s.Environment["OTEL_BSP_SCHEDULE_DELAY"] = "200";
            });
        }

        const string ClientTrace = "4bf92f3577b34da6a3ce929d0e0e4736", ClientSpan = "00f067aa0ba902b7";
        Gateway.HttpAnswer answer = await Gateway.GatewayFixture.CurlAsync(mesh, "-H", $"traceparent: 00-{ClientTrace}-{ClientSpan}-01", "http://10.231.0.1:8080/");
        Assert.True(answer is { Status: 200, ServedBy: "web" }, mesh.Explain($"through the gateway\n{answer}"));

        bool spans = await Eventually(() => receiver.Spans.Any(s => s.Span.Name == "gateway GET") && receiver.Spans.Any(s => s.Span.Name == "flow inbound"));
        string seen = string.Join("; ", receiver.Spans.Select(s => $"{s.Span.Name} trace {Convert.ToHexStringLower(s.Span.TraceId.Span)} span {Convert.ToHexStringLower(s.Span.SpanId.Span)} parent {Convert.ToHexStringLower(s.Span.ParentSpanId.Span)}"));
        Assert.True(spans, mesh.Explain($"spans received: {seen}"));
        OpenTelemetry.Proto.Trace.V1.Span request = Assert.Single(receiver.Spans, s => s.Span.Name == "gateway GET").Span;
        OpenTelemetry.Proto.Trace.V1.Span flow = Assert.Single(receiver.Spans, s => s.Span.Name == "flow inbound").Span;
        Assert.Equal(ClientTrace, Convert.ToHexStringLower(request.TraceId.Span));
        Assert.Equal(ClientSpan, Convert.ToHexStringLower(request.ParentSpanId.Span));
        Assert.Equal(OpenTelemetry.Proto.Trace.V1.Span.Types.SpanKind.Server, request.Kind);
        Assert.Equal("all/web", request.Attributes.FirstOrDefault(a => a.Key == "http.route")?.Value.StringValue);

        // The receiving agent's flow span and the backend's traceparent both have the gateway's span as parent.
        string gatewaySpan = Convert.ToHexStringLower(request.SpanId.Span);
        Assert.True(Convert.ToHexStringLower(flow.TraceId.Span) == ClientTrace && Convert.ToHexStringLower(flow.ParentSpanId.Span) == gatewaySpan, $"spans: {seen}");
        Assert.Equal($"00-{ClientTrace}-{gatewaySpan}-01", answer.Field("tp"));
    }

    private static Socket Listen(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Any, port));
        socket.Listen(128);
        return socket;
    }

    private static double? Value(IReadOnlyList<PrometheusSample> scrape, string name, IReadOnlyDictionary<string, string> labels) => AgentMetrics.Value(scrape, name, labels);

    private static string Describe(IReadOnlyList<PrometheusSample> scrape) => AgentMetrics.Describe(scrape);

    private static Task<IReadOnlyList<PrometheusSample>> ScrapeAsync(Topology mesh, int node, string path) => AgentMetrics.ScrapeAsync(mesh, node, path);

    private static Task<IReadOnlyList<PrometheusSample>> WaitForAsync(Topology mesh, int node, string path, Func<IReadOnlyList<PrometheusSample>, bool> done) =>
        AgentMetrics.WaitForAsync(mesh, node, path, done);

    private static async Task<bool> Eventually(Func<bool> condition)
    {
        for (DateTime end = DateTime.UtcNow + Patience; DateTime.UtcNow < end; await Task.Delay(200))
        {
            if (condition())
            {
                return true;
            }
        }

        return condition();
    }
}
