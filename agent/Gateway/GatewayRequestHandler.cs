using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Polly;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// One request through the gateway: the rule that takes it (404 when none does), its redirect answered here, or a
/// backend chosen by weight and the request forwarded there with the rule's rewrites and header changes, within
/// its timeouts, retried where the rule allows, mirrored where it asks; then one access log line, the request
/// metrics and the span.
/// </summary>
internal sealed class GatewayRequestHandler(
    GatewayRoutes routes, BackendPools pools, IHttpForwarder forwarder, RequestMirror mirror, GatewayMetrics metrics,
    ListenerTable listeners, IReadOnlyDictionary<string, JwtAuthenticator> authenticators, ConsumerAuthenticator consumers, ConsumerPlans plans,
    string sourcePrincipal, ResetFloodGuard resets, ILogger logger, ILogger? accessLog)
{
    public async Task HandleAsync(HttpContext context)
    {
        long started = Stopwatch.GetTimestamp();
        Activity? span = GatewayTracing.Start(context);
        HttpRequest request = context.Request;
        // A request that cannot have a body (most of them: GET, HEAD, no Content-Length) needs no counting layer.
        bool bodiless = !(context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? false);
        CountingStream? requestBody = bodiless ? null : new CountingStream(request.Body);
        if (requestBody is not null)
        {
            request.Body = requestBody;
        }

        var responseBody = new CountingStream(context.Response.Body);
        context.Response.Body = responseBody;
        string path = request.Path.HasValue ? request.Path.Value! : "/";
        string route = "-", flags = GatewayResponseFlags.None;
        BackendTarget? backend = null;
        string? endpoint = null, caller = null;
        try
        {
            GatewayListenerConfig? listener = listeners.Resolve(context.Connection.LocalIpAddress, context.Connection.LocalPort, request.Host.Host);
            if (listener is null)
            {
                flags = GatewayResponseFlags.NoRoute;
                await AnswerAsync(context, StatusCodes.Status404NotFound, "no listener on this port takes this host name");
                return;
            }

            RulePlan? plan = routes.Match(listener, request.Host.Host, path, request.Method, request.Headers, request.Query, out HttpRouteMatchConfig? match);
            if (plan is null)
            {
                flags = GatewayResponseFlags.NoRoute;
                await AnswerAsync(context, StatusCodes.Status404NotFound, "no route matches this request");
                return;
            }

            route = plan.Display;
            if (plan.Jwt is { } jwt)
            {
                caller = await AuthenticatedAsync(context, plan, jwt);
                if (caller is null)
                {
                    return;
                }
            }

            Consumers.ConsumerRecord? consumer = null;
            if (plan.Consumers is { } required)
            {
                consumer = await IdentifiedAsync(context, plan, required);
                if (consumer is null)
                {
                    return;
                }

                caller = "consumer:" + consumer.Name;
                if (!await WithinPlanAsync(context, plan, consumer))
                {
                    flags = GatewayResponseFlags.RateLimited;
                    return;
                }
            }

            if (plan.RateLimits is { } limits && !await WithinRateLimitsAsync(context, plan, limits, consumer?.Name))
            {
                flags = GatewayResponseFlags.RateLimited;
                return;
            }

            if (caller is { Length: > 0 })
            {
                // Into the mesh with the request: the receiving agent's policies may match it (from.requestPrincipals).
                context.Items[ForwardTransformer.PrincipalItem] = caller;
            }

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
            if (plan.Mirrors.Count > 0 && bodiless)
            {
                mirror.Send(context, plan, forwardPath, forwardHost);
            }

            (flags, backend, endpoint) = await ForwardAsync(context, plan, backend, forwardPath, forwardHost, bodiless, span);
        }
        finally
        {
            if (resets.Charge(context))
            {
                metrics.ConnectionClosedForResets();
                GatewayLog.ResetFlood(logger, context.Connection.RemoteIpAddress?.ToString() ?? "-");
            }

            var record = new GatewayRequestRecord(
                request.Method, request.Host.Value ?? "", path, request.Protocol, route, backend?.Display ?? "-", endpoint ?? "-", backend?.Name ?? "-", backend?.MeshService is not null,
                request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true, context.Response.StatusCode, flags,
                requestBody?.Count ?? 0, responseBody.Count, Stopwatch.GetElapsedTime(started).TotalMilliseconds, sourcePrincipal,
                context.Connection.RemoteIpAddress?.ToString() ?? "-", span?.TraceId ?? default);
            metrics.Request(record);
            if (accessLog is not null)
            {
                GatewayLog.Request(accessLog, record.Method, record.Host, record.Path, record.Protocol, record.Route, record.Upstream, record.Endpoint, record.Status, record.Flags,
                    record.RequestBytes, record.ResponseBytes, Math.Round(record.DurationMs, 1), record.Client, caller ?? "-", record.TraceId == default ? "-" : record.TraceId.ToHexString());
            }

            GatewayTracing.Stop(span, record);
        }
    }

    /// <summary>
    /// Sends the request, again where the rule's retry allows it (Polly's retry: an idempotent request without a
    /// body, after a failed connection, a retryable code, a timeout or no endpoint, within the attempts, after the
    /// backoff), each attempt to a backend drawn by weight and an endpoint its pool chooses, within the backend
    /// timeout, all of them within the request timeout; both end when the response headers arrive.
    /// </summary>
    private async Task<(string Flags, BackendTarget Backend, string? Endpoint)> ForwardAsync(
        HttpContext context, RulePlan plan, BackendTarget backend, string path, string host, bool bodiless, Activity? span)
    {
        ResiliencePipeline<AttemptOutcome>? retries = bodiless && IsIdempotent(context.Request.Method) ? plan.Retries : null;
        using CancellationTokenSource? whole = plan.Timeouts.Request > TimeSpan.Zero ? new CancellationTokenSource(plan.Timeouts.Request) : null;
        var attempt = new Attempt(pools, forwarder, metrics, logger, context, plan, backend, path, host, Telemetry.FlowTracing.TraceParent(span), whole,
            1 + (retries is null ? 0 : plan.Retry!.Attempts));
        AttemptOutcome outcome;
        plan.Budget?.RequestStarted();
        try
        {
            outcome = retries is null
                ? await attempt.RunAsync()
                : await retries.ExecuteAsync(static (a, _) => a.RunAsync(), attempt, context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return (GatewayResponseFlags.ClientGone, attempt.Backend, null);
        }
        finally
        {
            plan.Budget?.RequestFinished();
        }

        if (outcome.Withheld is int withheld)
        {
            // An answer held back for a retry the budget then did not allow: the backend's code goes to the client.
            metrics.RetryOverBudget(plan.Display);
            context.Response.Clear();
            await AnswerAsync(context, withheld, $"backend {attempt.Backend.Display} answered {withheld}; the route's retry budget allows no more retries now");
            return (GatewayResponseFlags.RetriesExhausted, attempt.Backend, outcome.Endpoint);
        }

        bool timedOut = outcome.TimedOut || (whole?.IsCancellationRequested == true && outcome.Error != ForwarderError.None);
        if (outcome.Refusal is { } refusal)
        {
            await AnswerAsync(context, StatusCodes.Status503ServiceUnavailable, refusal == GatewayResponseFlags.Overflow
                ? $"backend {attempt.Backend.Display} is at its limits or its circuit is open"
                : $"backend {attempt.Backend.Display} has no healthy endpoint");
            return (refusal, attempt.Backend, null);
        }

        if (timedOut)
        {
            if (!context.Response.HasStarted)
            {
                context.Response.Clear();
                context.Response.StatusCode = StatusCodes.Status504GatewayTimeout;
            }

            GatewayLog.ForwardFailed(logger, plan.Display, attempt.Backend.Display, "timeout", "no response headers within the rule's timeouts");
            return (GatewayResponseFlags.Timeout, attempt.Backend, outcome.Endpoint);
        }

        bool retriedOut = attempt.Number > 1 && outcome.Failed;
        if (outcome.Error != ForwarderError.None)
        {
            // YARP answered 502 if the response had not started; else it aborted the response. A client that went
            // away is its own business (flag DC), not a warning: a load generator stopping would flood the log.
            string flags = retriedOut ? GatewayResponseFlags.RetriesExhausted : GatewayResponseFlags.Of(outcome.Error);
            if (flags == GatewayResponseFlags.ClientGone)
            {
                GatewayLog.ClientGone(logger, plan.Display, attempt.Backend.Display, outcome.Error.ToString());
            }
            else
            {
                GatewayLog.ForwardFailed(logger, plan.Display, attempt.Backend.Display, outcome.Error.ToString(),
                    Reason(context.Features.Get<IForwarderErrorFeature>()?.Exception));
            }

            return (flags, attempt.Backend, outcome.Endpoint);
        }

        return (retriedOut ? GatewayResponseFlags.RetriesExhausted : GatewayResponseFlags.None, attempt.Backend, outcome.Endpoint);
    }

    /// <summary>One request's attempts: each starts clean (the last one's answer never reached the client) and draws its backend again.</summary>
    private sealed class Attempt(
        BackendPools pools, IHttpForwarder forwarder, GatewayMetrics metrics, ILogger logger,
        HttpContext context, RulePlan plan, BackendTarget backend, string path, string host, string? traceParent, CancellationTokenSource? whole, int attempts)
    {
        public BackendTarget Backend { get; private set; } = backend;

        public int Number { get; private set; }

        public async ValueTask<AttemptOutcome> RunAsync()
        {
            Number++;
            if (Number > 1)
            {
                // The budget's place was taken when the retry was decided; it is given back when this attempt ends.
                try
                {
                    return await RetryAsync();
                }
                finally
                {
                    plan.Budget!.RetryFinished();
                }
            }

            return await SendAsync();
        }

        /// <summary>The last attempt's answer never reached the client: start clean, on a backend drawn again.</summary>
        private async ValueTask<AttemptOutcome> RetryAsync()
        {
            context.Response.Clear();
            context.Features.Set<IForwarderErrorFeature>(null);
            Backend = Choose(plan) ?? Backend;
            metrics.Retried(plan.Display);
            return await SendAsync();
        }

        private async ValueTask<AttemptOutcome> SendAsync()
        {
            // The last attempt's answer goes to the client whatever its code: there is no other to give.
            IReadOnlyList<int>? withhold = Number < attempts ? plan.Retry?.Codes : null;
            AttemptOutcome outcome = await pools.For(Backend).SendAsync(context,
                new AttemptRequest(forwarder, plan, Backend, path, host, traceParent, withhold, whole));
            if (Number < attempts && outcome.Retryable)
            {
                GatewayLog.Retrying(logger, plan.Display, Backend.Display,
                    outcome.Withheld?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? (outcome.TimedOut ? "timeout" : outcome.Refusal ?? outcome.Error.ToString()), Number);
            }

            return outcome;
        }
    }

    /// <summary>The exception's message and its causes' ("The SSL connection could not be established: … RemoteCertificateNameMismatch").</summary>
    internal static string Reason(Exception? exception)
    {
        var parts = new List<string>();
        for (Exception? e = exception; e is not null && parts.Count < 4; e = e.InnerException)
        {
            string message = e.Message.Replace(", see inner exception.", "", StringComparison.Ordinal).Replace(" See the inner exception for details.", "", StringComparison.Ordinal).TrimEnd('.');
            if (message.Length > 0 && !parts.Contains(message))
            {
                parts.Add(message);
            }
        }

        return string.Join(": ", parts);
    }

    /// <summary>
    /// The rule's rate limits for this client: within them the response says what is left (RateLimit-Limit and
    /// RateLimit-Remaining); over one it is answered 429 with Retry-After and RateLimit-Reset, and counted.
    /// </summary>
    private async ValueTask<bool> WithinRateLimitsAsync(HttpContext context, RulePlan plan, RuleRateLimits limits, string? consumer)
    {
        RateLimitDecision decision = limits.Acquire(context.Connection.RemoteIpAddress?.ToString() ?? "", consumer);
        if (!decision.Limited)
        {
            PromiseRateLimitHeaders(context.Response, decision);
            return true;
        }

        SetRefusalHeaders(context.Response.Headers, decision);
        metrics.RateLimited(plan.Display, decision.Limit.Key);
        await AnswerAsync(context, StatusCodes.Status429TooManyRequests,
            $"rate limit of route {plan.Display}: {decision.Limit.Requests} requests per {Contracts.Duration.Format(decision.Limit.Window)}{Per(decision.Limit.Key)}");
        return false;
    }

    private static string Per(RateLimitKey key) => key switch
    {
        RateLimitKey.ClientAddress => " per client address",
        RateLimitKey.Consumer => " per consumer",
        _ => "",
    };

    /// <summary>
    /// The rule's consumer requirement: the consumer's name goes to the backend in the rule's header (a client's own
    /// never does); no, an unknown or a refused credential is answered 401 or 403 (503 before the consumers are read).
    /// </summary>
    private async ValueTask<Consumers.ConsumerRecord?> IdentifiedAsync(HttpContext context, RulePlan plan, RuleConsumersConfig required)
    {
        if (required.ForwardHeader.Length > 0)
        {
            context.Request.Headers.Remove(required.ForwardHeader);
        }

        ConsumerVerdict verdict = consumers.Identify(context, required);
        if (verdict.Ok)
        {
            if (required.ForwardHeader.Length > 0)
            {
                context.Request.Headers[required.ForwardHeader] = verdict.Consumer!.Name;
            }

            return verdict.Consumer;
        }

        metrics.AuthRefused(plan.Display, verdict.Status);
        GatewayLog.RequestRefused(logger, plan.Display, verdict.Status, verdict.Reason);
        if (verdict.Challenge is not null)
        {
            context.Response.Headers.WWWAuthenticate = verdict.Challenge;
        }

        await AnswerAsync(context, verdict.Status, verdict.Reason);
        return null;
    }

    /// <summary>The consumer's plan: its rate limits (429 with their headers), then its daily quota (429 until UTC midnight).</summary>
    private async ValueTask<bool> WithinPlanAsync(HttpContext context, RulePlan plan, Consumers.ConsumerRecord consumer)
    {
        PlanDecision decision = plans.Admit(consumer);
        if (decision.Allowed)
        {
            if (decision.Limit is { } within)
            {
                PromiseRateLimitHeaders(context.Response, within);
            }

            return true;
        }

        if (decision.UnknownPlan)
        {
            GatewayLog.UnknownPlan(logger, consumer.Name, consumer.Plan);
            metrics.AuthRefused(plan.Display, StatusCodes.Status403Forbidden);
            await AnswerAsync(context, StatusCodes.Status403Forbidden, $"consumer {consumer.Name}'s plan {consumer.Plan} is not offered here");
            return false;
        }

        IHeaderDictionary headers = context.Response.Headers;
        if (decision.QuotaExceeded)
        {
            string retryAfter = Math.Max(1, (long)Math.Ceiling(plans.Usage.UntilTomorrow().TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
            headers.RetryAfter = retryAfter;
            headers["RateLimit-Reset"] = retryAfter;
            headers["RateLimit-Policy"] = $"{decision.DailyQuota.ToString(System.Globalization.CultureInfo.InvariantCulture)};w=86400";
            headers["RateLimit-Limit"] = decision.DailyQuota.ToString(System.Globalization.CultureInfo.InvariantCulture);
            headers["RateLimit-Remaining"] = "0";
            metrics.QuotaExceeded(plan.Display);
            await AnswerAsync(context, StatusCodes.Status429TooManyRequests, $"consumer {consumer.Name} has used its daily quota of {decision.DailyQuota} requests (plan {consumer.Plan}); it renews at 00:00 UTC");
            return false;
        }

        RateLimitDecision limited = decision.Limit!.Value;
        SetRefusalHeaders(headers, limited);
        metrics.RateLimited(plan.Display, RateLimitKey.Consumer);
        await AnswerAsync(context, StatusCodes.Status429TooManyRequests,
            $"plan {consumer.Plan} of consumer {consumer.Name}: {limited.Limit.Requests} requests per {Contracts.Duration.Format(limited.Limit.Window)}");
        return false;
    }

    /// <summary>
    /// The rule's token check: a valid token's chosen claims go to the backend as headers (a client's own headers of
    /// those names never do); no or a bad token is answered 401, one without the rule's scopes or claims 403, each
    /// with its WWW-Authenticate challenge.
    /// </summary>
    private async ValueTask<string?> AuthenticatedAsync(HttpContext context, RulePlan plan, RuleJwtConfig jwt)
    {
        if (!authenticators.TryGetValue(jwt.Provider, out JwtAuthenticator? authenticator))
        {
            await AnswerAsync(context, StatusCodes.Status500InternalServerError, $"route {plan.Display}: JWT provider {jwt.Provider} is not running (a new provider needs a restart)");
            return null;
        }

        IHeaderDictionary headers = context.Request.Headers;
        foreach (string header in authenticator.ForwardedHeaders)
        {
            headers.Remove(header);
        }

        JwtVerdict verdict = await authenticator.ValidateAsync(headers.Authorization.ToString(), jwt);
        if (verdict.Ok)
        {
            foreach ((string name, string value) in verdict.Headers)
            {
                headers[name] = value;
            }

            return verdict.Principal ?? "";
        }

        metrics.AuthRefused(plan.Display, verdict.Status);
        GatewayLog.RequestRefused(logger, plan.Display, verdict.Status, verdict.Reason);
        context.Response.Headers.WWWAuthenticate = verdict.Challenge;
        await AnswerAsync(context, verdict.Status, verdict.Reason);
        return null;
    }

    /// <summary>The limit's headers on the response when it starts: a retry clears the response of the attempt before it.</summary>
    private static void PromiseRateLimitHeaders(HttpResponse response, RateLimitDecision decision) =>
        response.OnStarting(static state =>
        {
            (HttpResponse response, RateLimitDecision d) = ((HttpResponse, RateLimitDecision))state;
            SetRateLimitHeaders(response.Headers, d);
            return Task.CompletedTask;
        }, (response, decision));

    /// <summary>A 429's headers: the limit's, and when to come back (Retry-After and RateLimit-Reset).</summary>
    private static void SetRefusalHeaders(IHeaderDictionary headers, RateLimitDecision decision)
    {
        SetRateLimitHeaders(headers, decision);
        string retryAfter = decision.RetryAfterSeconds;
        headers.RetryAfter = retryAfter;
        headers["RateLimit-Reset"] = retryAfter;
    }

    private static void SetRateLimitHeaders(IHeaderDictionary headers, RateLimitDecision decision)
    {
        headers["RateLimit-Policy"] = decision.Policy;
        headers["RateLimit-Limit"] = decision.Limit.Requests.ToString(System.Globalization.CultureInfo.InvariantCulture);
        headers["RateLimit-Remaining"] = decision.Remaining.ToString(System.Globalization.CultureInfo.InvariantCulture);
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
