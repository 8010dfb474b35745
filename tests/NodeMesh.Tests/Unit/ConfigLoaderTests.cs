using NodeMesh.Config;
using NodeMesh.Telemetry;

namespace NodeMesh.Tests.Unit;

public class ConfigLoaderTests
{
    private const string Valid = """
        {
          // comments are allowed
          "node": { "name": "node1", "address": "10.231.0.1" },
          "trustDomain": "cluster.local",
          "ca": { "dir": "/var/lib/nodemesh/ca" },
          "workloads": [
            { "name": "web", "ip": "10.240.1.2", "identity": "spiffe://cluster.local/ns/shop/sa/web", "netns": "/var/run/netns/web" }
          ],
          "nodes": [ { "name": "node2", "address": "10.231.0.2" } ],
          "remoteWorkloads": [
            { "name": "db", "ip": "10.240.2.2", "identity": "spiffe://cluster.local/ns/shop/sa/db", "node": "node2" }
          ],
        }
        """;

    [Fact]
    public void Parse_ValidFile_AppliesDefaults()
    {
        AgentConfig config = ConfigLoader.Parse(Valid, "test.json");
        Assert.Equal("node1", config.Node.Name);
        Assert.Equal(15001, config.Ports.Outbound);
        Assert.Equal(15006, config.Ports.InboundPlaintext);
        Assert.Equal(15008, config.Ports.Tunnel);
        Assert.Equal(100, config.Tunnel.MaxStreamsPerConnection);
        Assert.Equal("/run/nodemesh/agent.sock", config.ApiSocket);
        Assert.Single(config.Workloads);
        Assert.Single(config.RemoteWorkloads);
    }

    [Theory]
    [InlineData("\"http/protobuf\"", "HttpProtobuf")]
    [InlineData("\"HttpProtobuf\"", "HttpProtobuf")]
    [InlineData("\"grpc\"", "Grpc")]
    public void Parse_Telemetry_TakesTheOtlpSettings_AndMetricsOnTheirPortByDefault(string protocol, string expectedName)
    {
        OtlpProtocol expected = Enum.Parse<OtlpProtocol>(expectedName);
        AgentConfig config = ConfigLoader.Parse(Valid.Replace("\"trustDomain\"", $$"""
            "telemetry": { "otlp": { "endpoint": "http://10.0.0.5:4318", "protocol": {{protocol}}, "exportInterval": "2s" } },
            "trustDomain"
            """, StringComparison.Ordinal), "test.json");
        Assert.Equal(15020, config.Ports.Metrics);
        Assert.Equal(expected, config.Telemetry.Otlp.Protocol);
        Assert.Equal(TimeSpan.FromSeconds(2), config.Telemetry.Otlp.ExportInterval);
        TelemetryPlan plan = TelemetrySetup.Plan(config, _ => null);
        Assert.Equal("http://10.0.0.5:4318", plan.OtlpEndpoint);
        Assert.Equal(new Uri("http://10.0.0.5:4318/v1/metrics"), TelemetrySetup.SignalEndpoint(new Uri(plan.OtlpEndpoint!), OtlpProtocol.HttpProtobuf));
    }

    [Fact]
    public void TelemetryPlan_WithoutAnEndpointInTheFile_TakesTheOtelVariables_AndIsOffWithoutThem()
    {
        AgentConfig config = ConfigLoader.Parse(Valid, "test.json");
        Assert.Null(TelemetrySetup.Plan(config, _ => null).OtlpEndpoint);
        var environment = new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://c:4318", ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf" };
        TelemetryPlan plan = TelemetrySetup.Plan(config, name => environment.GetValueOrDefault(name));
        Assert.Equal(("http://c:4318", OtlpProtocol.HttpProtobuf), (plan.OtlpEndpoint, plan.OtlpProtocol));
        Assert.Equal("nodemesh", plan.ServiceName);
    }

    [Fact]
    public void Parse_Durations_AreReadAsWritten_AndTheOlderSecondKeysStillWork()
    {
        AgentConfig config = ConfigLoader.Parse(Valid.Replace("\"trustDomain\"", """
            "drainTimeout": "1m30s",
            "tunnel": { "connectTimeout": "750ms", "keepaliveIntervalSeconds": 2, "keepaliveTimeout": "9s" },
            "trustDomain"
            """, StringComparison.Ordinal), "test.json");
        Assert.Equal(TimeSpan.FromSeconds(90), config.DrainTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(750), config.Tunnel.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), config.Tunnel.KeepaliveInterval);
        Assert.Equal(TimeSpan.FromSeconds(9), config.Tunnel.KeepaliveTimeout);
        Assert.Equal(TimeSpan.FromSeconds(60), config.Tunnel.IdleTimeout);
        Assert.Equal(TimeSpan.FromHours(24), config.Ca.CertificateTtl);

        // Written back in the newer form only.
        string written = System.Text.Json.JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig);
        Assert.Contains("\"keepaliveInterval\": \"2s\"", written, StringComparison.Ordinal);
        Assert.Contains("\"drainTimeout\": \"1m30s\"", written, StringComparison.Ordinal);
        Assert.DoesNotContain("Seconds", written, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\"tunnel\": { \"connectTimeout\": \"2s\", \"connectTimeoutSeconds\": 3 },", "tunnel.connectTimeoutSeconds: give tunnel.connectTimeout")]
    [InlineData("\"tunnel\": { \"idleTimeout\": \"2s\", \"idleTimeoutSeconds\": 3 }, \"ports\": { \"tunnel\": 0 },", "ports.tunnel:")]
    [InlineData("\"tunnel\": { \"connectTimeout\": 5 },", "tunnel.connectTimeout: a duration needs a unit")]
    [InlineData("\"tunnel\": { \"idleTimeout\": \"soon\" },", "tunnel.idleTimeout: 'soon' is not a duration")]
    [InlineData("\"tunnel\": { \"keepaliveInterval\": \"20s\", \"keepaliveTimeout\": \"10s\" },", "tunnel.keepaliveTimeout: must be longer than tunnel.keepaliveInterval")]
    [InlineData("\"drainTimeout\": \"2h\",", "drainTimeout: 2h must be between 0s and 1h")]
    [InlineData("\"ca\": { \"dir\": \"/x\", \"certificateTtl\": \"1s\" },", "ca.certificateTtl: 1s must be between 5s and 90d")]
    public void Parse_BadDurations_AreErrors_NamingTheField(string fragment, string expected)
    {
        string json = Valid.Replace("\"ca\": { \"dir\": \"/var/lib/nodemesh/ca\" },", "", StringComparison.Ordinal)
            .Replace("\"trustDomain\"", fragment + " \"trustDomain\"", StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "test.json"));
        Assert.Contains(ex.Errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Parse_CollectsEveryError_WithTheFieldPath()
    {
        string json = Valid
            .Replace("\"10.240.1.2\"", "\"10.240.1.300\"", StringComparison.Ordinal)
            .Replace("\"node\": \"node2\"", "\"node\": \"node9\"", StringComparison.Ordinal)
            .Replace("sa/db", "sa/DB", StringComparison.Ordinal)
            .Replace("\"/var/run/netns/web\"", "\"relative/path\"", StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "test.json"));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].ip: '10.240.1.300' is not an IPv4 address", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].netns:", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("remoteWorkloads[0].node: 'node9' is not one of the nodes", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("remoteWorkloads[0].identity:", StringComparison.Ordinal) && e.Contains("service account", StringComparison.Ordinal));
        Assert.Equal(4, ex.Errors.Count);
        Assert.Contains("test.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_UnknownField_IsAnError_NamingIt()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{ "node": { "name": "a", "adress": "10.0.0.1" } }""", "f"));
        Assert.Contains("adress", ex.Message, StringComparison.Ordinal);
        Assert.Contains("node", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_RepeatedField_IsAnError_NamingIt()
    {
        // Which mode did the operator mean? A repeated key is refused, not silently the last one.
        string json = Valid.Replace("\"netns\": \"/var/run/netns/web\" }", "\"netns\": \"/var/run/netns/web\", \"mode\": \"STRICT\", \"mode\": \"PERMISSIVE\" }", StringComparison.Ordinal);
        Assert.Contains("\"mode\": \"PERMISSIVE\"", json, StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.Contains("mode", ex.Errors[0], StringComparison.Ordinal);
        Assert.Contains("duplicate", ex.Errors[0], StringComparison.OrdinalIgnoreCase);
        Assert.Contains("line", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_BadJson_NamesLineAndColumn()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("{\n  \"node\": { \"name\": \"a\" \n", "f"));
        Assert.Contains("line", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_WrongType_NamesTheField()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{ "ports": { "outbound": "fast" } }""", "f"));
        Assert.StartsWith("ports.outbound", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_NullSections_AreErrors_NotCrashes()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{ "node": null, "workloads": [ null ] }""", "f"));
        Assert.Contains("node: must not be null", ex.Errors);
        ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{ "node": {"name":"a","address":"10.0.0.1"}, "workloads": [ null ] }""", "f"));
        Assert.Contains("workloads[0]: must be an object, not null", ex.Errors);
        ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("null", "f"));
        Assert.Contains("null", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_RefusesDuplicatesAndPortClashes()
    {
        string json = Valid.Replace("\"10.240.2.2\"", "\"10.240.1.2\"", StringComparison.Ordinal)
            .Replace("\"name\": \"db\"", "\"name\": \"web\"", StringComparison.Ordinal);
        json = json.Replace("\"trustDomain\"", "\"ports\": { \"outbound\": 15008 }, \"trustDomain\"", StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.Contains(ex.Errors, e => e.Contains("remoteWorkloads[0].name: workload name 'web' is already used by workloads[0].name", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.Contains("remoteWorkloads[0].ip: workload ip '10.240.1.2' is already used", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("ports:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("web;rm -rf /")]
    [InlineData("-j ACCEPT")]
    [InlineData("$(reboot)")]
    [InlineData("Web")]
    [InlineData("")]
    public void Validate_RefusesHostileWorkloadNames(string name)
    {
        string json = Valid.Replace("\"name\": \"web\"", $"\"name\": {System.Text.Json.JsonSerializer.Serialize(name)}", StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].name:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("10.0.0.1", true)]
    [InlineData("010.0.0.1", false)]
    [InlineData("10.0.0", false)]
    [InlineData("::1", false)]
    [InlineData("10.0.0.1 ", false)]
    [InlineData("1.2.3.4; iptables -F", false)]
    public void IsIPv4_AcceptsOnlyCanonicalDottedQuads(string value, bool expected) =>
        Assert.Equal(expected, ConfigLoader.IsIPv4(value));

    [Fact]
    public void Load_MissingFile_SaysWhich()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Load("/nonexistent/nodemesh.json"));
        Assert.Contains("/nonexistent/nodemesh.json", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NullFieldsAreErrors_NeverCrashes()
    {
        const string json = """
            {"node":{"name":"a","address":"10.0.0.1"},
             "workloads":[{"name":null,"ip":null,"identity":null,"netns":null,"labels":null}],
             "nodes":[{"name":"b","address":null}],
             "remoteWorkloads":[{"name":"r","ip":"10.0.0.9","identity":"spiffe://cluster.local/ns/a/sa/r","node":null}]}
            """;
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].name:", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].netns:", StringComparison.Ordinal));
        Assert.Contains("workloads[0].labels: must be an object, not null", ex.Errors);
        Assert.Contains(ex.Errors, e => e.StartsWith("nodes[0].address:", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("remoteWorkloads[0].node:", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_RefusesWorkloadsInTheAgentsReservedNamespace()
    {
        string json = Valid.Replace("spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/nodemesh-system/sa/node.node2", StringComparison.Ordinal);
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].identity:", StringComparison.Ordinal) && e.Contains("reserved", StringComparison.Ordinal));
    }
}
