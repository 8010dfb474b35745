using System.Text.Json;
using System.Text.Json.Nodes;
using NodeMesh.Config;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The real binary refuses a malformed configuration file before doing anything: exit code 2 and a message on
/// stderr naming the field (its JSON path), for both <c>nodemesh check</c> and <c>nodemesh run</c>.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class ConfigValidationTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nodemesh-it", "config-" + Guid.NewGuid().ToString("N")[..8]);

    public ConfigValidationTests() => Directory.CreateDirectory(_dir);

    public static TheoryData<string, string, string> MalformedConfigs() => new()
    {
        // case name, how to break a valid config, what stderr must name
        { "bad workload ip", "workloads[0].ip=10.240.1.999", "workloads[0].ip" },
        { "unknown top-level field", "+nodez=1", "nodez" },
        { "unknown field in a workload", "+workloads[0].netnz=/x", "workloads[0].netnz" },
        { "wrong type", "+drainSeconds=\"five\"", "drainSeconds" },
        { "not a duration", "drainTimeout=\"five\"", "drainTimeout" },
        { "a duration without its unit", "+tunnel.connectTimeout=5", "tunnel.connectTimeout" },
        { "a duration out of range", "+tunnel.keepaliveInterval=\"10m\"", "tunnel.keepaliveInterval" },
        { "an OTLP endpoint that is not an http URL", "+telemetry.otlp.endpoint=\"ftp://collector:4317\"", "telemetry.otlp.endpoint" },
        { "an unknown OTLP protocol", "+telemetry.otlp.protocol=\"Thrift\"", "telemetry.otlp.protocol" },
        { "the metrics port on another agent port", "+ports.metrics=15008", "ports.metrics" },
        { "identity in another trust domain", "workloads[0].identity=spiffe://other.domain/ns/test/sa/a", "workloads[0].identity" },
        { "remote workload on an unknown node", "remoteWorkloads[0].node=node9", "remoteWorkloads[0].node" },
        { "port out of range", "ports.tunnel=70000", "ports.tunnel" },
        { "hostile workload name", "workloads[0].name=a;iptables -F", "workloads[0].name" },
        { "truncated JSON", "truncate", "line 1" },
    };

    [Theory]
    [MemberData(nameof(MalformedConfigs))]
    public async Task MalformedConfig_IsRefusedByCheckAndRun_NamingTheField(string name, string edit, string expected)
    {
        string path = WriteConfig(name, edit);
        foreach (string command in new[] { "check", "run" })
        {
            CommandResult result = await Command.RunAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh, command, "--config", path);

            Assert.True(result.ExitCode == 2 && !result.TimedOut, $"{name}: 'nodemesh {command}' must exit 2 for an invalid config; {result}");
            Assert.True(result.Stderr.Contains(expected, StringComparison.Ordinal), $"{name}: stderr of 'nodemesh {command}' must name '{expected}'; {result}");
            Assert.True(result.Stderr.Contains(path, StringComparison.Ordinal), $"{name}: stderr of 'nodemesh {command}' should name the file; {result}");
        }

        Assert.False(File.Exists(Path.Combine(_dir, "agent.sock")), $"{name}: 'nodemesh run' created its API socket for an invalid config");
        Assert.False(Directory.Exists(Path.Combine(_dir, "state")), $"{name}: 'nodemesh run' created its state directory for an invalid config");
    }

    [Fact]
    public async Task SeveralErrors_AreAllReported_EachWithItsPath()
    {
        string path = WriteConfig("several", "workloads[0].ip=300.1.1.1", "node.address=nowhere", "tunnel.maxStreamsPerConnection=0");

        CommandResult result = await Command.RunAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh, "check", "--config", path);

        Assert.Equal(2, result.ExitCode);
        foreach (string field in new[] { "workloads[0].ip", "node.address", "tunnel.maxStreamsPerConnection" })
        {
            Assert.True(result.Stderr.Contains(field + ":", StringComparison.Ordinal), $"stderr must report {field}; {result}");
        }
    }

    [Fact]
    public async Task ValidConfig_PassesCheck()
    {
        string path = WriteConfig("valid");

        CommandResult result = await Command.RunAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh, "check", "--config", path);

        Assert.True(result.Succeeded, result.ToString());
        Assert.Contains("configuration is valid", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_WithoutCa_IsRefused_NamingCaDir()
    {
        string path = WriteConfig("no-ca");

        CommandResult result = await Command.RunAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh, "run", "--config", path);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("ca.dir", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("nodemesh ca init", result.Stderr, StringComparison.Ordinal);
    }

    /// <summary>
    /// Writes a valid one-node config with one local and one remote workload, changed by <paramref name="edits"/>:
    /// "path=value" sets an existing field (value is JSON if it parses, else a string), "+path=value" adds a field,
    /// "truncate" cuts the file in the middle.
    /// </summary>
    private string WriteConfig(string name, params string[] edits)
    {
        var config = new AgentConfig
        {
            Node = new NodeConfig { Name = "node1", Address = "10.231.0.1" },
            Ca = new CaConfig { Dir = Path.Combine(_dir, "ca") },
            StateDir = Path.Combine(_dir, "state"),
            ApiSocket = Path.Combine(_dir, "agent.sock"),
            Workloads = [new WorkloadConfig { Name = "a", Ip = "10.240.1.2", Identity = "spiffe://cluster.local/ns/test/sa/a", Netns = "/var/run/netns/nonexistent-a" }],
            Nodes = [new PeerNodeConfig { Name = "node2", Address = "10.231.0.2" }],
            RemoteWorkloads = [new RemoteWorkloadConfig { Name = "b", Ip = "10.240.2.2", Identity = "spiffe://cluster.local/ns/test/sa/b", Node = "node2" }],
        };
        JsonNode root = JsonNode.Parse(JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig))!;
        string text = root.ToJsonString();
        foreach (string edit in edits)
        {
            if (edit == "truncate")
            {
                text = root.ToJsonString()[..40];
                continue;
            }

            bool add = edit.StartsWith('+');
            string[] parts = edit.TrimStart('+').Split('=', 2);
            string[] segments = parts[0].Replace("[", ".[", StringComparison.Ordinal).Split('.');
            JsonNode parent = root;
            foreach (string segment in segments[..^1])
            {
                parent = segment.StartsWith('[') ? parent[int.Parse(segment[1..^1], System.Globalization.CultureInfo.InvariantCulture)]! : parent[segment]!;
            }

            string last = segments[^1];
            Assert.True(add || parent[last] is not null, $"test bug: {parts[0]} is not in the config");
            JsonNode? value;
            try
            {
                value = JsonNode.Parse(parts[1]);
            }
            catch (JsonException)
            {
                value = JsonValue.Create(parts[1]);
            }

            parent[last] = value;
            text = root.ToJsonString();
        }

        string path = Path.Combine(_dir, name.Replace(' ', '-') + ".json");
        File.WriteAllText(path, text);
        return path;
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
