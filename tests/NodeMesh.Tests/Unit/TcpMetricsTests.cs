using System.Diagnostics.Metrics;
using NodeMesh.Telemetry;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace NodeMesh.Tests.Unit;

/// <summary>The Istio TCP series through the real OpenTelemetry SDK: bytes while flows run, the labels, and series dropped with their workload.</summary>
public sealed class TcpMetricsTests
{
    private sealed class Transfer : ITcpTransfer
    {
        public long BytesToSource { get; set; }

        public long BytesToDestination { get; set; }
    }

    /// <summary>An exporter that keeps the last collection's points: metric name, labels, value.</summary>
    private sealed class LastCollection : BaseExporter<Metric>
    {
        public List<(string Name, Dictionary<string, string> Labels, long Value)> Points { get; } = [];

        public override ExportResult Export(in Batch<Metric> batch)
        {
            Points.Clear();
            foreach (Metric metric in batch)
            {
                foreach (ref readonly MetricPoint point in metric.GetMetricPoints())
                {
                    var labels = new Dictionary<string, string>();
                    foreach (KeyValuePair<string, object?> tag in point.Tags)
                    {
                        labels[tag.Key] = tag.Value?.ToString() ?? "";
                    }

                    Points.Add((metric.Name, labels, point.GetSumLong()));
                }
            }

            return ExportResult.Success;
        }
    }

    private static (Meter, TcpMetrics, MeterProvider, LastCollection) Create()
    {
        var meter = new Meter("NodeMesh.Test." + Guid.NewGuid().ToString("N"));
        var tcp = new TcpMetrics(meter);
        var exporter = new LastCollection();
        MeterProvider provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(meter.Name)
            .AddReader(new BaseExportingMetricReader(exporter) { TemporalityPreference = MetricReaderTemporalityPreference.Cumulative })
            .Build()!;
        return (meter, tcp, provider, exporter);
    }

    private static long? Value(LastCollection exporter, string name, string reporter, string? flags = null, string? source = null) =>
        exporter.Points.Where(p => p.Name == name && p.Labels["reporter"] == reporter && (flags is null || p.Labels["response_flags"] == flags)
                && (source is null || p.Labels["source_workload"] == source))
            .Select(p => (long?)p.Value).SingleOrDefault();

    [Fact]
    public void BytesShowWhileTheFlowRuns_AndMoveToTheTotalsWhenItEnds_NeverGoingBack()
    {
        (Meter meter, TcpMetrics tcp, MeterProvider provider, LastCollection exporter) = Create();
        using (meter)
        using (provider)
        {
            var flow = new Transfer();
            TcpMetrics.TcpTally tally = tcp.Opened(TcpSeriesLabels.For("outbound", "tunnel", "web", "spiffe://td/ns/shop/sa/web", "db", "spiffe://td/ns/data/sa/db"), flow);
            flow.BytesToDestination = 100;
            flow.BytesToSource = 7;
            provider.ForceFlush();
            Assert.Equal(100, Value(exporter, "istio_tcp_received_bytes_total", "source"));
            Assert.Equal(7, Value(exporter, "istio_tcp_sent_bytes_total", "source"));
            Assert.Equal(1, Value(exporter, "istio_tcp_connections_opened_total", "source"));
            Assert.Null(Value(exporter, "istio_tcp_connections_closed_total", "source"));

            flow.BytesToDestination = 250;
            TcpMetrics.Closed(tally, "-");
            flow.BytesToDestination = 999; // a read after the end is not counted again
            provider.ForceFlush();
            Assert.Equal(250, Value(exporter, "istio_tcp_received_bytes_total", "source"));
            Assert.Equal(1, Value(exporter, "istio_tcp_connections_closed_total", "source", "-"));
            (string _, Dictionary<string, string> labels, long _) = exporter.Points.First(p => p.Name == "istio_tcp_received_bytes_total");
            Assert.Equal("web", labels["source_workload"]);
            Assert.Equal("shop", labels["source_workload_namespace"]);
            Assert.Equal("spiffe://td/ns/data/sa/db", labels["destination_principal"]);
            Assert.Equal("data", labels["destination_workload_namespace"]);
            Assert.Equal("mutual_tls", labels["connection_security_policy"]);
        }
    }

    [Fact]
    public void ALocalFlow_IsReportedByBothSides_AndARemovedWorkloadsSeriesAreNoLongerExported()
    {
        (Meter meter, TcpMetrics tcp, MeterProvider provider, LastCollection exporter) = Create();
        using (meter)
        using (provider)
        {
            var flow = new Transfer { BytesToDestination = 5 };
            TcpMetrics.Closed(tcp.Opened(TcpSeriesLabels.For("outbound", "local", "web", "spiffe://td/ns/shop/sa/web", "db", "spiffe://td/ns/data/sa/db"), flow), "-");
            tcp.OpenedAndClosed(TcpSeriesLabels.For("inbound", "plaintext", null, null, "db", "spiffe://td/ns/data/sa/db"), "DENIED");
            provider.ForceFlush();
            Assert.Equal(5, Value(exporter, "istio_tcp_received_bytes_total", "source"));
            Assert.Equal(5, Value(exporter, "istio_tcp_received_bytes_total", "destination", source: "web"));
            Assert.Equal(1, Value(exporter, "istio_tcp_connections_closed_total", "destination", "DENIED"));
            Assert.Contains(exporter.Points, p => p.Labels["source_workload"] == "unknown" && p.Labels["connection_security_policy"] == "none");

            tcp.DropWorkload("web");
            provider.ForceFlush();
            Assert.DoesNotContain(exporter.Points, p => p.Labels["reporter"] == "source");
            Assert.Contains(exporter.Points, p => p.Labels["reporter"] == "destination");
        }
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/shop/sa/web", "shop")]
    [InlineData("spiffe://cluster.local/ns/shop", "shop")]
    [InlineData("spiffe://cluster.local/ns//sa/web", "unknown")]
    [InlineData("spiffe://cluster.local/node/n1", "unknown")]
    [InlineData(null, "unknown")]
    public void TheNamespaceLabel_IsTheSpiffeIdsNamespace(string? identity, string expected) =>
        Assert.Equal(expected, TcpSeriesLabels.NamespaceOf(identity));
}
