using System.Text.Json;
using NodeMesh.Cli;
using NodeMesh.Contracts;

namespace NodeMesh.Tests.Unit;

/// <summary>Tables, the YAML written from JSON, and what each listing prints in each format.</summary>
public class CliOutputTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 2, 12, 0, 0, TimeSpan.Zero);

    private static FlowRecord Flow(long sequence, string source, string? workload, FlowOutcome outcome, DateTimeOffset ended) => new()
    {
        Direction = "outbound",
        Path = "tunnel",
        Source = source,
        Destination = "10.240.2.2:80",
        SourceWorkload = workload,
        DestinationWorkload = "db",
        SourceIdentity = "spiffe://cluster.local/ns/shop/sa/api",
        DestinationIdentity = "spiffe://cluster.local/ns/shop/sa/db",
        Encrypted = true,
        BytesSent = 1234,
        BytesReceived = 56,
        DurationMs = 1500,
        Outcome = outcome,
        Result = outcome == FlowOutcome.Denied ? "denied by policy deny-all" : "ok",
        Ended = ended,
        Sequence = sequence,
    };

    [Fact]
    public void Table_PadsColumnsToTheWidestCell_AndShowsWideColumnsOnlyWhenWide()
    {
        var table = new Table(new Column("NAME"), new Column("EXTRA", WideOnly: true), new Column("N", AlignRight: true)).Add("a", "x", "1").Add("longer", "y", "100");
        Assert.Equal("NAME      N\na         1\nlonger  100\n", table.Render(wide: false));
        Assert.Equal("NAME    EXTRA    N\na       x        1\nlonger  y      100\n", table.Render(wide: true));
        Assert.Equal("a         1\nlonger  100\n", table.Render(wide: false, header: false));
    }

    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/a/sa/b")]
    [InlineData("", "\"\"")]
    [InlineData("true", "\"true\"")]
    [InlineData("No", "\"No\"")]
    [InlineData("10.0.0.1:80", "\"10.0.0.1:80\"")]
    [InlineData("valid until 2026", "\"valid until 2026\"")]
    [InlineData("key:", "\"key:\"")]
    [InlineData("a#b", "\"a#b\"")]
    [InlineData("-x", "\"-x\"")]
    public void YamlScalars_ArePlainOnlyWhenYamlReadsThemBackTheSame(string value, string expected) => Assert.Equal(expected, YamlWriter.Scalar(value));

    [Fact]
    public void Yaml_IsTheJsonsDataInBlockStyle()
    {
        string yaml = YamlWriter.FromJson("""{"node":"n1","count":3,"ok":true,"none":null,"list":[],"map":{},"peers":[{"node":"n2","tunnels":[{"a":1}]}],"names":["x","y z"]}""");
        Assert.Equal("""
            node: n1
            count: 3
            ok: true
            none: null
            list: []
            map: {}
            peers:
              - node: n2
                tunnels:
                  - a: 1
            names:
              - x
              - "y z"

            """.Replace("\r", "", StringComparison.Ordinal), yaml);
    }

    [Fact]
    public void WorkloadList_JsonIsAnArray_YamlASequence_TableHasWideColumns()
    {
        List<WorkloadInfo> workloads = [new() { Name = "api", Ip = "10.240.1.2", Identity = "spiffe://cluster.local/ns/shop/sa/api", Netns = "/var/run/netns/api",
            Mode = "STRICT", Source = "api", Certificate = "valid until 2026-12-03 00:00:00Z", Capture = "installed (IPv6 off)", Labels = new Dictionary<string, string> { ["app"] = "api" } }];
        using (JsonDocument json = JsonDocument.Parse(WorkloadCommands.Render(workloads, OutputFormat.Json)))
        {
            Assert.Equal("api", json.RootElement[0].GetProperty("name").GetString());
        }

        Assert.StartsWith("- name: api\n  ip: \"10.240.1.2\"\n", WorkloadCommands.Render(workloads, OutputFormat.Yaml), StringComparison.Ordinal);
        string table = WorkloadCommands.Render(workloads, OutputFormat.Table);
        Assert.Contains("STRICT", table, StringComparison.Ordinal);
        Assert.DoesNotContain("/var/run/netns/api", table, StringComparison.Ordinal);
        string wide = WorkloadCommands.Render(workloads, OutputFormat.Wide);
        Assert.Contains("/var/run/netns/api", wide, StringComparison.Ordinal);
        Assert.Contains("app=api", wide, StringComparison.Ordinal);
        Assert.Contains("installed (IPv6 off)", wide, StringComparison.Ordinal);
    }

    [Fact]
    public void Flows_TableHasTimeAndIdentities_JsonIsOneObjectPerLine_FollowBatchesHaveNoHeader()
    {
        List<FlowRecord> flows = [Flow(7, "10.240.1.2:4000", "api", FlowOutcome.Ok, Now)];
        string table = FlowsCommand.Render(flows, OutputFormat.Table, header: true);
        string[] lines = table.TrimEnd().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.StartsWith("TIME", lines[0], StringComparison.Ordinal);
        Assert.Contains("SOURCE-IDENTITY", lines[0], StringComparison.Ordinal);
        Assert.Contains("12:00:00", lines[1], StringComparison.Ordinal);
        Assert.Contains("ns/shop/sa/api", lines[1], StringComparison.Ordinal);
        Assert.Contains("1s500ms", lines[1], StringComparison.Ordinal);
        Assert.DoesNotContain("10.240.1.2:4000", table, StringComparison.Ordinal);
        Assert.Contains("10.240.1.2:4000", FlowsCommand.Render(flows, OutputFormat.Wide, header: true), StringComparison.Ordinal);

        Assert.Single(FlowsCommand.Render(flows, OutputFormat.Table, header: false).TrimEnd().Split('\n'));
        Assert.Equal("", FlowsCommand.Render([], OutputFormat.Table, header: false));
        string json = FlowsCommand.Render([.. flows, Flow(8, "10.240.1.2:4001", "api", FlowOutcome.Denied, Now)], OutputFormat.Json, header: true);
        Assert.Equal([7L, 8L], json.TrimEnd().Split('\n').Select(l => JsonSerializer.Deserialize(l, ApiJsonContext.Default.FlowRecord)!.Sequence));
        Assert.Contains("\"ended\":\"2026-12-02T12:00:00+00:00\"", json, StringComparison.Ordinal);
        Assert.StartsWith("- direction: outbound\n", FlowsCommand.Render(flows, OutputFormat.Yaml, header: false), StringComparison.Ordinal);
        Assert.Equal("[]\n", FlowsCommand.Render([], OutputFormat.Yaml, header: true));
    }

    [Fact]
    public void FlowFilters_WorkloadDeniedAndSince()
    {
        FlowRecord old = Flow(1, "10.240.1.2:1", "api", FlowOutcome.Ok, Now - TimeSpan.FromHours(2));
        FlowRecord denied = Flow(2, "10.240.1.3:1", "web", FlowOutcome.Denied, Now - TimeSpan.FromMinutes(1));
        FlowRecord other = Flow(3, "10.240.1.4:1", null, FlowOutcome.Ok, Now) with { DestinationWorkload = null };
        FlowRecord[] all = [old, denied, other];
        Assert.Equal([1L, 2L], all.Where(new FlowsCommand.Filter("db", false, null).Matches).Select(f => f.Sequence));
        Assert.Equal([2L], all.Where(new FlowsCommand.Filter("web", false, null).Matches).Select(f => f.Sequence));
        Assert.Equal([2L], all.Where(new FlowsCommand.Filter(null, true, null).Matches).Select(f => f.Sequence));
        FlowsCommand.Filter recent = FlowsCommand.Filter.From(App.Options.Parse(["--since", "10m"], CommandTable.All.Single(c => c.Path == "flows")), Now);
        Assert.Equal([2L, 3L], all.Where(recent.Matches).Select(f => f.Sequence));
        Assert.Contains("--since:", Assert.Throws<App.UsageException>(() =>
            FlowsCommand.Filter.From(App.Options.Parse(["--since", "yesterday"], CommandTable.All.Single(c => c.Path == "flows")), Now)).Message, StringComparison.Ordinal);
    }

    private static AgentStatus Status() => new()
    {
        Node = "node1",
        Version = "1.2.3",
        Transports = ["mtls-tcp"],
        StartedAt = Now - TimeSpan.FromMinutes(90),
        ActiveFlows = 2,
        FlowsRecorded = 40,
        FlowsRefused = 3,
        FlowsDenied = 1,
        Listener = new TunnelListenerStatus { Address = "10.0.0.1:15008", Connections = 1, Streams = 2,
            Accepted = [new TunnelConnectionState { PeerIdentity = "spiffe://cluster.local/ns/shop/sa/web", LocalIdentity = "spiffe://cluster.local/ns/nodemesh-system/sa/node-node1", Streams = 2 }] },
        Peers =
        [
            new PeerStatus { Node = "node2", Address = "10.0.0.2:15008", State = "connected", Connections = 1, Streams = 4,
                Tunnels = [new TunnelPeerState { Node = "node2", SourceIdentity = "spiffe://cluster.local/ns/shop/sa/api", Connections = 1, Streams = 4 }] },
            new PeerStatus { Node = "node3", Address = "10.0.0.3:15008", State = "backoff", LastError = "connection refused", RetryAt = Now + TimeSpan.FromSeconds(4) },
        ],
        Certificates =
        [
            new CertificateInfo { Identity = "spiffe://cluster.local/ns/nodemesh-system/sa/node-node1", Kind = "node", NotAfter = Now + TimeSpan.FromHours(3) },
            new CertificateInfo { Identity = "spiffe://cluster.local/ns/shop/sa/api", Kind = "workload", Error = "the CA is unreachable" },
        ],
        Workloads = [new WorkloadInfo { Name = "api", Ip = "10.240.1.2", Identity = "spiffe://cluster.local/ns/shop/sa/api", Netns = "/var/run/netns/api", Certificate = "pending", Capture = "installed (IPv6 off)" }],
    };

    [Fact]
    public void Status_Table_ShowsPeersCertificatesWithExpiryAndWorkloads()
    {
        string text = StatusCommand.Render(Status(), OutputFormat.Table, Now);
        Assert.Contains("node1 (nodemesh 1.2.3), up 1h30m", text, StringComparison.Ordinal);
        Assert.Contains("10.0.0.1:15008: 1 connection from peers, 2 streams", text, StringComparison.Ordinal);
        Assert.Contains("2 active, 40 ended or refused since the start: 3 refused, 1 denied", text, StringComparison.Ordinal);
        string node2 = Assert.Single(text.Split('\n'), l => l.StartsWith("node2", StringComparison.Ordinal));
        Assert.Matches(@"^node2\s+10\.0\.0\.2:15008\s+connected\s+1\s+4\s+-$", node2);
        Assert.Contains("connection refused (retry in 4s)", text, StringComparison.Ordinal);
        Assert.Contains("2026-12-02 15:00:00Z (in 3h)", text, StringComparison.Ordinal);
        Assert.Contains("unavailable: the CA is unreachable", text, StringComparison.Ordinal);
        Assert.Matches(@"\napi\s+10\.240\.1\.2\s+PERMISSIVE", text);
        string wide = StatusCommand.Render(Status(), OutputFormat.Wide, Now);
        Assert.Contains("ACCEPTED TUNNELS", wide, StringComparison.Ordinal);
        Assert.Contains("spiffe://cluster.local/ns/shop/sa/web", wide, StringComparison.Ordinal);
        Assert.DoesNotContain("ACCEPTED TUNNELS", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Status_JsonAndYaml_CarryTheSameData()
    {
        string json = StatusCommand.Render(Status(), OutputFormat.Json, Now);
        Assert.StartsWith("{\n  \"node\": \"node1\",\n", json, StringComparison.Ordinal);
        AgentStatus back = JsonSerializer.Deserialize(json, ApiJsonContext.Default.AgentStatus)!;
        Assert.Equal(["node2", "node3"], back.Peers.Select(p => p.Node));
        Assert.Equal("connection refused", back.Peers[1].LastError);
        string yaml = StatusCommand.Render(Status(), OutputFormat.Yaml, Now);
        Assert.StartsWith("node: node1\n", yaml, StringComparison.Ordinal);
        Assert.Contains("\npeers:\n  - node: node2\n", yaml, StringComparison.Ordinal);
        Assert.Contains("    lastError: \"connection refused\"\n", yaml, StringComparison.Ordinal);
        Assert.Contains("  notAfter: \"2026-12-02T15:00:00+00:00\"\n", yaml, StringComparison.Ordinal);
        Assert.Contains("\"notAfter\": \"2026-12-02T15:00:00+00:00\"", json, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(3 * 3600, "3h")]
    [InlineData(2 * 86400 + 4 * 3600 + 59, "2d4h")]
    [InlineData(45 * 60 + 10, "45m10s")]
    [InlineData(0, "0s")]
    public void Approximately_TwoLargestUnits(int seconds, string expected) => Assert.Equal(expected, StatusCommand.Approximately(TimeSpan.FromSeconds(seconds)));
}
