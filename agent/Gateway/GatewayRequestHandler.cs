using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// One request through the gateway: the rule that takes it (404 when none does), its redirect answered here, or a
/// backend chosen by weight and the request forwarded there with the rule's rewrites and header changes, within
/// its timeouts, retried where the rule allows, mirrored where it asks; then one access log line, the request
/// metrics and the span.
/// </summary>
internal sealed class GatewayRequestHandler(
    GatewayRoutes routes, BackendInvokers invokers, IHttpForwarder forwarder, RequestMirror mirror, GatewayMetrics metrics,
    IReadOnlyDictionary<int, string> listenerByPort, string sourcePrincipal, ILogger logger, ILogger? accessLog)
{
    private static readonly ForwarderRequestConfig Forwarding = new()
    {
        ActivityTimeout = TimeSpan.FromSeconds(100),
        // Cleartext backends speak HTTP/1.1: HTTP/2 cannot be negotiated without TLS.
        Version = System.Net.HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
    };

    public async Task HandleAsync(HttpContext context)
    {
        long started = Stopwatch.GetTimestamp();
        Activity? span = GatewayTracing.Start(context);
        HttpRequest request = context.Request;
        var requestBody = new CountingStream(request.Body);
        request.Body = requestBody;
        var responseBody = new CountingStream(context.Response.Body);
        context.Response.Body = responseBody;
        string path = request.Path.HasValue ? request.Path.Value! : "/";
        string route = "-", flags = GatewayResponseFlags.None;
        BackendTarget? backend = null;
        try
        {
            string listener = listenerByPort.GetValueOrDefault(context.Connection.LocalPort, "");
            RulePlan? plan = routes.Match(listener, request.Host.Host, path, request.Method, request.Headers, request.Query, out HttpRouteMatchConfig? match);
            if (plan is null)
            {
                flags = GatewayResponseFlags.NoRoute;
                await AnswerAsync(context, StatusCodes.Status404NotFound, "no route matches this request");
                return;
            }

            route = plan.Display;
            if (plan.Redirect is { } redirect)
            {
                string target = redirect.Path is { } modifier ? RequestRewrite.Path(path, modifier, match!) : path;
                context.Response.StatusCode = redirect.StatusCode;
                context.Response.Headers.Location = RequestRewrite.RedirectLocation(redirect, request.Scheme, request.Host.Host, request.Host.Port, target, request.QueryString.Value ?? "");
                return;
            }

            backend = Choose(plan);
            if (backend is null)
            {
                // The Gateway API's answer for a rule without a usable backend.
                flags = GatewayResponseFlags.NoBackend;
                await AnswerAsync(context, StatusCodes.Status500InternalServerError, $"route {plan.Display} has no backend");
                return;
            }

            string forwardPath = plan.Rewrite?.Path is { } rewrite ? RequestRewrite.Path(path, rewrite, match!) : path;
            string forwardHost = plan.Rewrite is { Hostname.Length: > 0 } hostRewrite ? hostRewrite.Hostname : request.Host.Value ?? "";
            bool bodiless = !(context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? false);
            if (plan.Mirrors.Count > 0 && bodiless)
            {
                mirror.Send(context, plan, forwardPath, forwardHost);
            }

            (flags, backend) = await ForwardAsync(context, plan, backend, forwardPath, forwardHost, bodiless, span);
        }
        finally
        {
            var record = new GatewayRequestRecord(
                request.Method, request.Host.Value ?? "", path, request.Protocol, route, backend?.Display ?? "-", backend?.Name ?? "-", backend?.MeshService is not null,
                request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true, context.Response.StatusCode, flags,
                requestBody.Count, responseBody.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds, sourcePrincipal,
                context.Connection.RemoteIpAddress?.ToString() ?? "-", span?.TraceId ?? default);
            metrics.Request(record);
            if (accessLog is not null)
            {
                GatewayLog.Request(accessLog, record.Method, record.Host, record.Path, record.Protocol, record.Route, record.Upstream, record.Status, record.Flags,
                    record.RequestBytes, record.ResponseBytes, Math.Round(record.DurationMs, 1), record.Client, record.TraceId == default ? "-" : record.TraceId.ToHexString());
            }

            GatewayTracing.Stop(span, record);
        }
    }

    /// <summary>
    /// Sends the request, again where the rule's retry allows it (an idempotent request without a body, after a
    /// failed connection or a retryable code, within the attempts, after the backoff), each attempt within the
    /// backend timeout and all of them within the request timeout; both end when the response headers arrive.
    /// </summary>
    private async Task<(string Flags, BackendTarget Backend)> ForwardAsync(
        HttpContext context, RulePlan plan, BackendTarget backend, string path, string host, bool bodiless, Activity? span)
    {
        HttpRouteRetryConfig? retry = plan.Retry is { Attempts: > 0 } r && bodiless && IsIdempotent(context.Request.Method) ? r : null;
        int attempts = 1 + (retry?.Attempts ?? 0);
        using CancellationTokenSource? whole = plan.Timeouts.Request > TimeSpan.Zero ? new CancellationTokenSource(plan.Timeouts.Request) : null;
        for (int attempt = 0; ; attempt++)
        {
            bool last = attempt == attempts - 1;
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, whole?.Token ?? CancellationToken.None);
            if (plan.Timeouts.BackendRequest > TimeSpan.Zero)
            {
                cancel.CancelAfter(plan.Timeouts.BackendRequest);
            }

            var transformer = new ForwardTransformer(plan, path, host, GatewayTracing.TraceParent(span), last ? null : retry?.Codes, whole, cancel);
            ForwarderError error = await forwarder.SendAsync(context, backend.Prefix, invokers.For(backend), Forwarding, transformer, cancel.Token);
            bool timedOut = transformer.TimedOut && !context.RequestAborted.IsCancellationRequested;
            bool again = !last && !context.Response.HasStarted && (transformer.WithheldStatus is not null || error is ForwarderError.Request || timedOut);
            if (again)
            {
                // The failed attempt's answer never reached the client: start clean, after the backoff, perhaps elsewhere.
                GatewayLog.Retrying(logger, plan.Display, backend.Display, transformer.WithheldStatus?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? (timedOut ? "timeout" : error.ToString()), attempt + 1);
                metrics.Retried(plan.Display);
                context.Response.Clear();
                context.Features.Set<IForwarderErrorFeature>(null);
                await Task.Delay(retry!.Backoff * (1 << Math.Min(attempt, 10)), context.RequestAborted).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                backend = Choose(plan) ?? backend;
                continue;
            }

            if (timedOut || (whole?.IsCancellationRequested == true && error != ForwarderError.None))
            {
                if (!context.Response.HasStarted)
                {
                    context.Response.Clear();
                    context.Response.StatusCode = StatusCodes.Status504GatewayTimeout;
                }

                GatewayLog.ForwardFailed(logger, plan.Display, backend.Display, "timeout", "no response headers within the rule's timeouts");
                return (GatewayResponseFlags.Timeout, backend);
            }

            if (error != ForwarderError.None)
            {
                // YARP answered 502 if the response had not started; else it aborted the response.
                GatewayLog.ForwardFailed(logger, plan.Display, backend.Display, error.ToString(), context.Features.Get<IForwarderErrorFeature>()?.Exception?.Message ?? "");
                return (attempt > 0 ? GatewayResponseFlags.RetriesExhausted : GatewayResponseFlags.Of(error), backend);
            }

            return (attempt > 0 && retry!.Codes.Contains(context.Response.StatusCode) ? GatewayResponseFlags.RetriesExhausted : GatewayResponseFlags.None, backend);
        }
    }

    private static BackendTarget? Choose(RulePlan plan) => plan.TotalWeight == 0 ? null : plan.Choose(Random.Shared.Next(plan.TotalWeight));

    /// <summary>RFC 9110's idempotent methods: what may be sent twice without doing twice.</summary>
    internal static bool IsIdempotent(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) || HttpMethods.IsPut(method)
        || HttpMethods.IsDelete(method) || HttpMethods.IsTrace(method);

    private static Task AnswerAsync(HttpContext context, int status, string reason)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(reason + "\n", context.RequestAborted);
    }
}
