using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry.Proto.Collector.Logs.V1;
using OpenTelemetry.Proto.Collector.Metrics.V1;
using OpenTelemetry.Proto.Collector.Trace.V1;
using OpenTelemetry.Proto.Common.V1;
using OpenTelemetry.Proto.Logs.V1;
using OpenTelemetry.Proto.Metrics.V1;
using OpenTelemetry.Proto.Trace.V1;

namespace NodeMesh.Tests.Telemetry;

/// <summary>
/// An OTLP receiver, as a collector would be: the metrics, trace and logs services over gRPC (HTTP/2 without
/// TLS) on one socket and <c>POST /v1/metrics</c>, <c>/v1/traces</c>, <c>/v1/logs</c> (HTTP/protobuf) on another,
/// all decoded with the published OTLP definitions. The sockets are made by the caller, so they can be born in a
/// test's network namespace.
/// </summary>
internal sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<Received> _received = new();
    private readonly ConcurrentQueue<(string Protocol, Span Span)> _spans = new();
    private readonly ConcurrentQueue<(string Protocol, LogRecord Record)> _logs = new();

    private OtlpReceiver(Socket grpc, Socket http)
    {
        GrpcEndPoint = (IPEndPoint)grpc.LocalEndPoint!;
        HttpEndPoint = (IPEndPoint)http.LocalEndPoint!;
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.ListenHandle((ulong)grpc.Handle, o => o.Protocols = HttpProtocols.Http2);
            kestrel.ListenHandle((ulong)http.Handle, o => o.Protocols = HttpProtocols.Http1);
        });
        _app = builder.Build();
        _app.MapGrpcService<MetricsServiceEndpoint>();
        _app.MapGrpcService<TraceServiceEndpoint>();
        _app.MapGrpcService<LogsServiceEndpoint>();
        _app.MapPost("/v1/traces", async (HttpContext context) =>
        {
            AddSpans("http/protobuf", ExportTraceServiceRequest.Parser.ParseFrom(await BodyAsync(context)));
            context.Response.ContentType = "application/x-protobuf";
            await context.Response.Body.WriteAsync(new ExportTraceServiceResponse().ToByteArray());
        });
        _app.MapPost("/v1/logs", async (HttpContext context) =>
        {
            AddLogs("http/protobuf", ExportLogsServiceRequest.Parser.ParseFrom(await BodyAsync(context)));
            context.Response.ContentType = "application/x-protobuf";
            await context.Response.Body.WriteAsync(new ExportLogsServiceResponse().ToByteArray());
        });
        _app.MapPost("/v1/metrics", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            Add("http/protobuf", ExportMetricsServiceRequest.Parser.ParseFrom(body.ToArray()));
            context.Response.ContentType = "application/x-protobuf";
            await context.Response.Body.WriteAsync(new ExportMetricsServiceResponse().ToByteArray());
        });
    }

    /// <summary>Every span received so far, with the protocol it came over.</summary>
    public IReadOnlyList<(string Protocol, Span Span)> Spans => [.. _spans];

    /// <summary>Every log record received so far, with the protocol it came over.</summary>
    public IReadOnlyList<(string Protocol, LogRecord Record)> Logs => [.. _logs];

    public IPEndPoint GrpcEndPoint { get; }

    public IPEndPoint HttpEndPoint { get; }

    /// <summary>Every export received so far, with the protocol it came over.</summary>
    public IReadOnlyList<Received> Exports => [.. _received];

    /// <summary>Starts a receiver on the given listening sockets (it takes them over).</summary>
    public static async Task<OtlpReceiver> StartAsync(Socket grpc, Socket http)
    {
        var receiver = new OtlpReceiver(grpc, http);
        await receiver._app.StartAsync();
        return receiver;
    }

    /// <summary>
    /// The newest value of the sum <paramref name="metric"/> whose point has all of <paramref name="labels"/>,
    /// received over <paramref name="protocol"/>; null if none was received.
    /// </summary>
    public long? LatestSum(string protocol, string metric, IReadOnlyDictionary<string, string> labels)
    {
        long? value = null;
        foreach (Received export in _received.Where(r => r.Protocol == protocol))
        {
            foreach (Metric m in export.Request.ResourceMetrics.SelectMany(r => r.ScopeMetrics).SelectMany(s => s.Metrics).Where(m => m.Name == metric))
            {
                foreach (NumberDataPoint point in m.Sum?.DataPoints ?? [])
                {
                    if (labels.All(l => point.Attributes.Any(a => a.Key == l.Key && a.Value.StringValue == l.Value)))
                    {
                        value = point.AsInt;
                    }
                }
            }
        }

        return value;
    }

    /// <summary>The resource attributes of the exports over <paramref name="protocol"/> (the last one's).</summary>
    public IReadOnlyDictionary<string, string> ResourceAttributes(string protocol) =>
        _received.LastOrDefault(r => r.Protocol == protocol)?.Request.ResourceMetrics.FirstOrDefault()?.Resource.Attributes
            .ToDictionary(a => a.Key, a => a.Value.ValueCase == AnyValue.ValueOneofCase.StringValue ? a.Value.StringValue : a.Value.ToString())
        ?? new Dictionary<string, string>();

    /// <summary>Every metric name received over <paramref name="protocol"/> (for assertion messages).</summary>
    public string Names(string protocol) => string.Join(", ", _received.Where(r => r.Protocol == protocol)
        .SelectMany(r => r.Request.ResourceMetrics).SelectMany(r => r.ScopeMetrics).SelectMany(s => s.Metrics).Select(m => m.Name).Distinct());

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private void Add(string protocol, ExportMetricsServiceRequest request) => _received.Enqueue(new Received(protocol, request));

    private void AddSpans(string protocol, ExportTraceServiceRequest request)
    {
        foreach (Span span in request.ResourceSpans.SelectMany(r => r.ScopeSpans).SelectMany(s => s.Spans))
        {
            _spans.Enqueue((protocol, span));
        }
    }

    private void AddLogs(string protocol, ExportLogsServiceRequest request)
    {
        foreach (LogRecord record in request.ResourceLogs.SelectMany(r => r.ScopeLogs).SelectMany(s => s.LogRecords))
        {
            _logs.Enqueue((protocol, record));
        }
    }

    private static async Task<byte[]> BodyAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        return body.ToArray();
    }

    internal sealed record Received(string Protocol, ExportMetricsServiceRequest Request);

    private sealed class TraceServiceEndpoint(OtlpReceiver receiver) : TraceService.TraceServiceBase
    {
        public override Task<ExportTraceServiceResponse> Export(ExportTraceServiceRequest request, ServerCallContext context)
        {
            receiver.AddSpans("grpc", request);
            return Task.FromResult(new ExportTraceServiceResponse());
        }
    }

    private sealed class LogsServiceEndpoint(OtlpReceiver receiver) : LogsService.LogsServiceBase
    {
        public override Task<ExportLogsServiceResponse> Export(ExportLogsServiceRequest request, ServerCallContext context)
        {
            receiver.AddLogs("grpc", request);
            return Task.FromResult(new ExportLogsServiceResponse());
        }
    }

    private sealed class MetricsServiceEndpoint(OtlpReceiver receiver) : MetricsService.MetricsServiceBase
    {
        public override Task<ExportMetricsServiceResponse> Export(ExportMetricsServiceRequest request, ServerCallContext context)
        {
            receiver.Add("grpc", request);
            return Task.FromResult(new ExportMetricsServiceResponse());
        }
    }
}
