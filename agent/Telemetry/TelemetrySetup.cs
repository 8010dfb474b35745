using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace NodeMesh.Telemetry;

/// <summary>
/// The OpenTelemetry SDK for the agent's meters: a Prometheus reader for <c>ports.metrics</c> and, when an
/// endpoint is configured (here or by OTEL_EXPORTER_OTLP_ENDPOINT), OTLP export over gRPC or HTTP/protobuf.
/// The standard OTEL_* variables apply (the SDK reads them); a value in the config file wins over its variable.
/// </summary>
internal static class TelemetrySetup
{
    /// <summary>What the agent will do with its meters, decided from the config and the environment (shown at start-up).</summary>
    public static TelemetryPlan Plan(AgentConfig config, Func<string, string?> environment)
    {
        OtlpConfig otlp = config.Telemetry.Otlp;
        string? endpoint = !string.IsNullOrEmpty(otlp.Endpoint) ? otlp.Endpoint
            : environment("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") is { Length: > 0 } metrics ? metrics
            : environment("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 } any ? any
            : null;
        OtlpProtocol protocol = otlp.Protocol
            ?? ((environment("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") ?? environment("OTEL_EXPORTER_OTLP_PROTOCOL")) == "http/protobuf" ? OtlpProtocol.HttpProtobuf : OtlpProtocol.Grpc);
        return new TelemetryPlan(config.Ports.Metrics, endpoint, protocol, environment("OTEL_SERVICE_NAME") is { Length: > 0 } name ? name : "nodemesh");
    }

    /// <summary>
    /// Log lines on standard output, as text or JSON, without the host's start-up banners; the access log's
    /// category is <c>NodeMesh.AccessLog</c>. With OTLP configured, every log record is exported as well.
    /// </summary>
    /// <param name="level">The level, changeable while the agent runs (the admin API's /logging).</param>
    public static void AddMeshLogging(ILoggingBuilder logging, AgentConfig config, TelemetryPlan plan, LogLevelSwitch level)
    {
        if (config.Logging.Format == LogFormat.Json)
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }

        logging.SetMinimumLevel(LogLevel.Trace);
        logging.AddFilter((_, _, l) => level.Allows(l));

        // A failed start is reported once, by the command line, without the host's stack trace; no banners.
        logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        logging.AddFilter("Microsoft.Hosting.Lifetime", l => l >= LogLevel.Warning && level.Allows(l));

        // Kestrel (admin, metrics, readiness) logs every request at Information: only its problems are the operator's business.
        logging.AddFilter("Microsoft.AspNetCore", l => l >= LogLevel.Warning && level.Allows(l));
        // So does YARP's forwarder (the gateway), and it warns of every failed request: the gateway's own lines say
        // what failed, with the causes, and leave out clients that went away; only YARP's errors are kept.
        logging.AddFilter("Yarp", l => l >= LogLevel.Error && level.Allows(l));
        if (plan.OtlpEndpoint is not null)
        {
            logging.AddOpenTelemetry(o =>
            {
                o.IncludeFormattedMessage = true;
                o.ParseStateValues = true;
                o.AddOtlpExporter(exporter => Point(exporter, config, plan, "logs"));
            });
        }
    }

    public static void AddMeshTelemetry(this IServiceCollection services, AgentConfig config, TelemetryPlan plan)
    {
        OpenTelemetryBuilder builder = services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the SDK's default detectors.
                resource.AddService(plan.ServiceName, serviceInstanceId: config.Node.Name, autoGenerateServiceInstanceId: false);
                resource.AddAttributes([new("host.name", config.Node.Name), new("nodemesh.node", config.Node.Name)]);
            });
        if (plan.OtlpEndpoint is not null)
        {
            // A span per flow (FlowTracing), sampled as OTEL_TRACES_SAMPLER says (default: always, or as the peer's span was).
            builder.WithTracing(tracing => tracing
                .AddSource(FlowTracing.SourceName)
                .AddOtlpExporter(exporter => Point(exporter, config, plan, "traces")));
        }

        builder.WithMetrics(metrics =>
            {
                // NodeMesh, NodeMesh.Authz, NodeMesh.Identity: every meter of the agent.
                metrics.AddMeter(MeshMetrics.MeterName, MeshMetrics.MeterName + ".*");
                if (plan.PrometheusPort != 0)
                {
                    metrics.AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0);
                }

                if (plan.OtlpEndpoint is { } endpoint)
                {
                    OtlpConfig otlp = config.Telemetry.Otlp;
                    metrics.AddOtlpExporter((exporter, reader) =>
                    {
                        Point(exporter, config, plan, "metrics");
                        if (otlp.ExportInterval is { } interval)
                        {
                            reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = (int)interval.TotalMilliseconds;
                        }

                        reader.TemporalityPreference = MetricReaderTemporalityPreference.Cumulative;
                    });
                }
            });
    }

    /// <summary>Protocol and (from the config file) endpoint of one signal's exporter; the SDK reads the OTEL_* variables for the rest.</summary>
    private static void Point(OtlpExporterOptions exporter, AgentConfig config, TelemetryPlan plan, string signal)
    {
        exporter.Protocol = plan.OtlpProtocol == OtlpProtocol.HttpProtobuf ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
        if (!string.IsNullOrEmpty(config.Telemetry.Otlp.Endpoint))
        {
            exporter.Endpoint = SignalEndpoint(new Uri(config.Telemetry.Otlp.Endpoint), plan.OtlpProtocol, signal);
        }
    }

    /// <summary>
    /// The URL a signal is posted to. As with OTEL_EXPORTER_OTLP_ENDPOINT, a base URL over HTTP gets
    /// <c>/v1/metrics</c>, <c>/v1/traces</c> or <c>/v1/logs</c> (the SDK uses a URL set in code as it is); gRPC takes the base URL.
    /// </summary>
    public static Uri SignalEndpoint(Uri endpoint, OtlpProtocol protocol, string signal = "metrics") =>
        protocol == OtlpProtocol.HttpProtobuf && endpoint.AbsolutePath is "/" or ""
            ? new Uri(endpoint, "/v1/" + signal)
            : endpoint;
}

/// <summary>Where the agent's meters go: Prometheus on a port (0: off), OTLP to an endpoint (null: off).</summary>
internal sealed record TelemetryPlan(int PrometheusPort, string? OtlpEndpoint, OtlpProtocol OtlpProtocol, string ServiceName)
{
    public string Describe() =>
        $"Prometheus {(PrometheusPort == 0 ? "off" : $"on :{PrometheusPort}/metrics")}; " +
        $"OTLP metrics, traces and logs {(OtlpEndpoint is null ? "off" : $"to {OtlpEndpoint} ({(OtlpProtocol == OtlpProtocol.Grpc ? "grpc" : "http/protobuf")})")}";
}
