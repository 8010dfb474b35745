using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace NodeMesh.Gateway;

/// <summary>
/// The gateway's request metrics under the names Istio's dashboards chart (<c>istio_requests_total</c>,
/// <c>istio_request_duration_milliseconds</c>, <c>istio_request_bytes</c>, <c>istio_response_bytes</c>), reported as
/// the source of the request (Istio's ingress gateway does the same), with the route that took it. Labels are
/// bounded by the configuration: routes, services and backends are the file's, codes and flags a small set.
/// </summary>
internal sealed class GatewayMetrics : IDisposable
{
    /// <summary>Under the agent's meter name, so the telemetry set-up that exports "NodeMesh.*" exports it.</summary>
    public const string MeterName = "NodeMesh.Gateway";

    private static readonly double[] DurationBuckets = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];
    private static readonly long[] ByteBuckets = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<long> _requestBytes;
    private readonly Histogram<long> _responseBytes;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _overBudget;
    private readonly Counter<long> _mirrors;
    private readonly Counter<long> _quotaExceeded;
    private readonly Counter<long> _ejections;
    private readonly Counter<long> _healthFailures;
    private readonly Counter<long> _refusals;
    private readonly Counter<long> _resetFloods;
    private readonly Counter<long> _rateLimited;
    private readonly Counter<long> _authRefusals;

    public GatewayMetrics()
    {
        _requests = _meter.CreateCounter<long>("istio_requests_total", description: "Requests through the gateway, by route, destination, response code and flags.");
        _duration = _meter.CreateHistogram("istio_request_duration_milliseconds", unit: "ms", description: "Time from a request's arrival to the end of its response.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _requestBytes = _meter.CreateHistogram("istio_request_bytes", unit: "By", description: "Request body sizes.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = ByteBuckets });
        _responseBytes = _meter.CreateHistogram("istio_response_bytes", unit: "By", description: "Response body sizes.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = ByteBuckets });
        _retries = _meter.CreateCounter<long>("nodemesh_gateway_retries_total", description: "Requests sent again after a failed attempt, by route.");
        _overBudget = _meter.CreateCounter<long>("nodemesh_gateway_retries_over_budget_total", description: "Retries not made because the route's retry budget was spent, by route.");
        _ejections = _meter.CreateCounter<long>("nodemesh_gateway_endpoint_ejections_total", description: "Endpoints ejected for failing in a row (passive outlier detection), by backend.");
        _healthFailures = _meter.CreateCounter<long>("nodemesh_gateway_health_check_failures_total", description: "Active health checks that failed, by backend.");
        _refusals = _meter.CreateCounter<long>("nodemesh_gateway_backend_refusals_total",
            description: "Requests not sent to a backend, by backend and reason (overflow: its limits were full; circuit_open; no_endpoint: none healthy).");
        _resetFloods = _meter.CreateCounter<long>("nodemesh_gateway_connections_closed_for_resets_total",
            description: "Client connections closed for cancelling requests faster than gateway.limits.maxClientResetsPerSecond (HTTP/2 rapid reset).");
        _rateLimited = _meter.CreateCounter<long>("nodemesh_gateway_rate_limited_total",
            description: "Requests refused with 429 by a rule's rate limit, by route and key (route: the rule's whole limit; client_address: one client's).");
        _authRefusals = _meter.CreateCounter<long>("nodemesh_gateway_auth_refusals_total",
            description: "Requests refused by a rule's token check, by route and response code (401: no or a bad token; 403: without the rule's scopes or claims).");
        _quotaExceeded = _meter.CreateCounter<long>("nodemesh_gateway_quota_exceeded_total", description: "Requests refused because the consumer had used its plan's daily quota, by route.");
        _mirrors = _meter.CreateCounter<long>("nodemesh_gateway_mirrored_requests_total", description: "Copies of requests sent to mirror backends, by route and result (sent, failed, dropped).");
    }

    public void Request(GatewayRequestRecord r)
    {
        // Ten labels, more than TagList holds without a heap array: an inline array on the stack instead, and the
        // status codes boxed once, so recording a request allocates nothing of its own.
        var labels = new RequestLabels();
        labels[0] = new("reporter", "source");
        labels[1] = new("source_workload", "gateway");
        labels[2] = new("source_principal", r.SourcePrincipal);
        labels[3] = new("destination_service", r.Upstream);
        labels[4] = new("destination_service_name", r.UpstreamName);
        labels[5] = new("request_protocol", r.Grpc ? "grpc" : "http");
        labels[6] = new("response_code", (uint)r.Status < (uint)BoxedCodes.Length ? BoxedCodes[r.Status] : r.Status);
        labels[7] = new("response_flags", r.Flags);
        labels[8] = new("connection_security_policy", r.Mesh ? "mutual_tls" : "none");
        labels[9] = new("route", r.Route);
        ReadOnlySpan<KeyValuePair<string, object?>> tags = labels;
        _requests.Add(1, tags);
        _duration.Record(r.DurationMs, tags);
        _requestBytes.Record(r.RequestBytes, tags);
        _responseBytes.Record(r.ResponseBytes, tags);
    }

    private static readonly object[] BoxedCodes = [.. Enumerable.Range(0, 600).Select(code => (object)code)];

    [System.Runtime.CompilerServices.InlineArray(10)]
    private struct RequestLabels
    {
        private KeyValuePair<string, object?> _first;
    }

    public void Retried(string route) => _retries.Add(1, new KeyValuePair<string, object?>("route", route));

    public void RetryOverBudget(string route) => _overBudget.Add(1, new KeyValuePair<string, object?>("route", route));

    public void Mirrored(string route, string result) => _mirrors.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("result", result));

    public void Ejected(string backend) => _ejections.Add(1, new KeyValuePair<string, object?>("backend", backend));

    public void HealthCheckFailed(string backend) => _healthFailures.Add(1, new KeyValuePair<string, object?>("backend", backend));

    public void Refused(string backend, string reason) => _refusals.Add(1, new KeyValuePair<string, object?>("backend", backend), new KeyValuePair<string, object?>("reason", reason));

    public void ConnectionClosedForResets() => _resetFloods.Add(1);

    public void AuthRefused(string route, int status) =>
        _authRefusals.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("response_code", BoxedCodes[status]));

    public void RateLimited(string route, RateLimitKey key) =>
        _rateLimited.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("key", key == RateLimitKey.Route ? "route" : "client_address"));

    public void QuotaExceeded(string route) => _quotaExceeded.Add(1, new KeyValuePair<string, object?>("route", route));

    public void Dispose() => _meter.Dispose();
}

/// <summary>One request as the access log, the metrics and the span see it when its response ends.</summary>
internal sealed record GatewayRequestRecord(
    string Method, string Host, string Path, string Protocol, string Route, string Upstream, string Endpoint, string UpstreamName, bool Mesh, bool Grpc,
    int Status, string Flags, long RequestBytes, long ResponseBytes, double DurationMs, string SourcePrincipal, string Client, ActivityTraceId TraceId);
