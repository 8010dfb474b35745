using System.Diagnostics;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>What a backend's endpoints are now: a version that changes when they do, and the endpoints.</summary>
/// <param name="Version">Compared by reference: the registry snapshot they were read from, or a constant for a plain address.</param>
internal sealed record EndpointSet(object Version, IReadOnlyList<EndpointSpec> Endpoints);

/// <summary>An endpoint as its source describes it, and how to make its client.</summary>
internal sealed record EndpointSpec(string Name, string Key, string Prefix, Func<HttpMessageInvoker> CreateClient);

/// <summary>One attempt's result, as the retry and the circuit breaker judge it.</summary>
/// <param name="Refusal">Why no endpoint was sent the request (the flag to log); null: one was.</param>
/// <param name="ResponseStarted">Some of the response reached the client: nothing can be tried again.</param>
internal readonly record struct AttemptOutcome(ForwarderError Error, int? Withheld, bool TimedOut, bool Failed, string? Refusal, string? Endpoint, bool ResponseStarted = false)
{
    public static AttemptOutcome Refused(string flag) => new(ForwarderError.None, null, false, true, flag, null);

    /// <summary>Worth another attempt: its answer was held back, it could not connect, it timed out, or no endpoint took it.</summary>
    public bool Retryable => !ResponseStarted && (Withheld is not null || TimedOut || Error == ForwarderError.Request || Refusal is not null);
}

/// <summary>What an attempt needs beyond the request: the rule, the rewritten path and host, and the timeouts in force.</summary>
internal sealed record AttemptRequest(
    IHttpForwarder Forwarder, RulePlan Plan, BackendTarget Target, string Path, string Host, string? TraceParent,
    IReadOnlyList<int>? WithholdCodes, CancellationTokenSource? Whole);

/// <summary>
/// One backend (a mesh service, or a plain address) as the gateway sends to it: its endpoints with a client each,
/// chosen per request by the backend's load-balancing policy among those healthy and not ejected; at most
/// <c>maxRequests</c> in flight and <c>maxPendingRequests</c> waiting (System.Threading.RateLimiting's concurrency
/// limiter), a circuit breaker on the failure ratio (Polly's), ejection after failures in a row, and active
/// health checks when the policy asks.
/// </summary>
internal sealed class BackendPool : IAsyncDisposable
{
    private readonly BackendTarget _target;
    private readonly BackendPolicyConfig _policy;
    private readonly Func<EndpointSet> _source;
    private readonly ForwarderRequestConfig _forwarding;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger _logger;
    private readonly ConcurrencyLimiter _limiter;
    private readonly ResiliencePipeline<AttemptOutcome>? _breaker;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _healthChecks;
    private State _state = new(new object(), [], null);

    /// <summary>May take a request now: healthy by the checks and not ejected (one delegate for every request).</summary>
    private static readonly Func<BackendEndpoint, bool> Available = static e => e.Healthy && !e.IsEjected(Stopwatch.GetTimestamp());
    private int _roundRobin;

    public BackendPool(BackendTarget target, BackendPolicyConfig policy, Func<EndpointSet> source, GatewayMetrics metrics, ILogger logger)
    {
        _target = target;
        _policy = policy;
        _source = source;
        _metrics = metrics;
        _logger = logger;
        _forwarding = new ForwarderRequestConfig
        {
            ActivityTimeout = TimeSpan.FromSeconds(100),
            // HTTP/2 cannot be negotiated without TLS: a cleartext backend is spoken to as its policy says it speaks.
            Version = policy.Protocol == BackendProtocol.H2c ? System.Net.HttpVersion.Version20 : System.Net.HttpVersion.Version11,
            VersionPolicy = policy.Protocol == BackendProtocol.H2c ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
        };
        CircuitBreakerConfig limits = policy.CircuitBreaker;
        _limiter = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = limits.MaxRequests,
            QueueLimit = limits.MaxPendingRequests,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
        if (limits.FailureRatio > 0)
        {
            _breaker = new ResiliencePipelineBuilder<AttemptOutcome>().AddCircuitBreaker(new CircuitBreakerStrategyOptions<AttemptOutcome>
            {
                FailureRatio = limits.FailureRatio,
                MinimumThroughput = limits.MinimumThroughput,
                SamplingDuration = limits.SamplingDuration,
                BreakDuration = limits.BreakDuration,
                ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is HttpRequestException || args.Outcome.Result.Failed),
                OnOpened = args =>
                {
                    GatewayLog.CircuitOpened(_logger, _target.Display, Contracts.Duration.Format(args.BreakDuration));
                    return ValueTask.CompletedTask;
                },
                OnClosed = _ =>
                {
                    GatewayLog.CircuitClosed(_logger, _target.Display);
                    return ValueTask.CompletedTask;
                },
            }).Build();
        }

        _healthChecks = policy.HealthCheck is { } check ? CheckHealthAsync(check, _stopping.Token) : Task.CompletedTask;
    }

    public string Display => _target.Display;

    /// <summary>The HTTP version requests to it are sent in (mirror copies and health checks too).</summary>
    public Version HttpVersion => _forwarding.Version!;

    public HttpVersionPolicy HttpVersionPolicy => _forwarding.VersionPolicy!.Value;

    /// <summary>The endpoints now (read again when their source changed), for the health checks, the mirror and `status`.</summary>
    public IReadOnlyList<BackendEndpoint> Endpoints => Current().Endpoints;

    /// <summary>
    /// One attempt of <paramref name="context"/>'s request on an endpoint of this backend, within its limits and its
    /// circuit; the endpoint learns how it went (passive health).
    /// </summary>
    public async ValueTask<AttemptOutcome> SendAsync(HttpContext context, AttemptRequest request)
    {
        using RateLimitLease permit = await _limiter.AcquireAsync(1, context.RequestAborted);
        if (!permit.IsAcquired)
        {
            _metrics.Refused(_target.Display, "overflow");
            return AttemptOutcome.Refused(GatewayResponseFlags.Overflow);
        }

        if (_breaker is null)
        {
            return await SendToEndpointAsync(context, request);
        }

        try
        {
            return await _breaker.ExecuteAsync(static (s, _) => s.Pool.SendToEndpointAsync(s.Context, s.Request), (Pool: this, Context: context, Request: request), context.RequestAborted);
        }
        catch (BrokenCircuitException)
        {
            _metrics.Refused(_target.Display, "circuit_open");
            return AttemptOutcome.Refused(GatewayResponseFlags.Overflow);
        }
    }

    /// <summary>An endpoint for a request outside the forwarder (a mirror copy), or null when none may take one.</summary>
    public BackendEndpoint? Choose(HttpRequest? request)
    {
        State state = Current();
        string? key = null;
        if (_policy.LoadBalancer.Type == LoadBalancerType.ConsistentHash && request is not null)
        {
            key = _policy.LoadBalancer.HashCookie.Length > 0 ? request.Cookies[_policy.LoadBalancer.HashCookie]
                : _policy.LoadBalancer.HashHeader.Length > 0 ? request.Headers[_policy.LoadBalancer.HashHeader].ToString() : null;
        }

        int index = EndpointChooser.Choose(_policy.LoadBalancer.Type, state.Endpoints, Available, ref _roundRobin, state.Ring, key, Random.Shared);
        return index < 0 ? null : state.Endpoints[index];
    }

    private async ValueTask<AttemptOutcome> SendToEndpointAsync(HttpContext context, AttemptRequest r)
    {
        BackendEndpoint? endpoint = Choose(context.Request);
        if (endpoint is null)
        {
            _metrics.Refused(_target.Display, "no_endpoint");
            return AttemptOutcome.Refused(GatewayResponseFlags.NoBackend);
        }

        endpoint.Started();
        try
        {
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, r.Whole?.Token ?? CancellationToken.None);
            if (r.Plan.Timeouts.BackendRequest > TimeSpan.Zero)
            {
                cancel.CancelAfter(r.Plan.Timeouts.BackendRequest);
            }

            var transformer = new ForwardTransformer(r.Plan, r.Target, r.Path, r.Host, r.TraceParent, r.WithholdCodes, r.Whole, cancel);
            ForwarderError error = await r.Forwarder.SendAsync(context, endpoint.Prefix, endpoint.Invoker, _forwarding, transformer, cancel.Token);
            bool timedOut = transformer.TimedOut && !context.RequestAborted.IsCancellationRequested;
            int status = transformer.WithheldStatus ?? context.Response.StatusCode;

            // The backend's own failures count against it; a client that went away does not.
            bool failed = timedOut || error is ForwarderError.Request or ForwarderError.ResponseHeaders || (error == ForwarderError.None && status >= 500);
            Report(endpoint, failed);
            return new AttemptOutcome(error, transformer.WithheldStatus, timedOut, failed, null, endpoint.Name, context.Response.HasStarted);
        }
        finally
        {
            endpoint.Finished();
        }
    }

    /// <summary>Passive health: enough failures in a row eject the endpoint for a while (longer each time), unless too many are out already.</summary>
    private void Report(BackendEndpoint endpoint, bool failed)
    {
        OutlierDetectionConfig outlier = _policy.OutlierDetection;
        if (!failed)
        {
            endpoint.Succeeded();
            endpoint.Ejections = 0;
            return;
        }

        int failures = endpoint.Failed();
        if (outlier.Consecutive5xx == 0 || failures < outlier.Consecutive5xx)
        {
            return;
        }

        State state = Current();
        long now = Stopwatch.GetTimestamp();
        int ejected = state.Endpoints.Count(e => e.IsEjected(now));
        if ((ejected + 1) * 100 > outlier.MaxEjectionPercent * state.Endpoints.Count && ejected > 0 || outlier.MaxEjectionPercent == 0)
        {
            return;
        }

        endpoint.Ejections++;
        TimeSpan duration = outlier.BaseEjectionTime * Math.Min(endpoint.Ejections, 10);
        endpoint.Eject(now + (long)(duration.TotalSeconds * Stopwatch.Frequency));
        _metrics.Ejected(_target.Display);
        GatewayLog.Ejected(_logger, _target.Display, endpoint.Name, Contracts.Duration.Format(duration), failures);
    }

    /// <summary>The endpoints, rebuilt (keeping each one's state and client) when the source's version changed.</summary>
    private State Current()
    {
        State state = Volatile.Read(ref _state);
        EndpointSet set = _source();
        if (ReferenceEquals(set.Version, state.Version))
        {
            return state;
        }

        lock (_gate)
        {
            state = _state;
            if (ReferenceEquals(set.Version, state.Version))
            {
                return state;
            }

            var byKey = state.Endpoints.ToDictionary(e => e.Key, StringComparer.Ordinal);
            var endpoints = new List<BackendEndpoint>(set.Endpoints.Count);
            foreach (EndpointSpec spec in set.Endpoints)
            {
                endpoints.Add(byKey.Remove(spec.Key, out BackendEndpoint? kept) ? kept : new BackendEndpoint(spec.Name, spec.Key, spec.Prefix, spec.CreateClient()));
            }

            // Gone endpoints' clients close once their requests had time to end.
            foreach (BackendEndpoint gone in byKey.Values)
            {
                _ = CloseLaterAsync(gone.Invoker);
            }

            HashRing? ring = _policy.LoadBalancer.Type == LoadBalancerType.ConsistentHash ? new HashRing([.. endpoints.Select(e => e.Key)]) : null;
            state = new State(set.Version, endpoints, ring);
            Volatile.Write(ref _state, state);
            return state;
        }
    }

    private async Task CloseLaterAsync(HttpMessageInvoker invoker)
    {
        await Task.Delay(TimeSpan.FromMinutes(2), _stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        invoker.Dispose();
    }

    /// <summary>Active health checks: a GET of the policy's path to every endpoint each interval, through the endpoint's own client.</summary>
    private async Task CheckHealthAsync(HealthCheckConfig check, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(check.Interval);
        try
        {
            do
            {
                IReadOnlyList<BackendEndpoint> endpoints = Current().Endpoints;
                await Task.WhenAll(endpoints.Select(e => CheckAsync(e, check, stopping)));
            }
            while (await timer.WaitForNextTickAsync(stopping));
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    private async Task CheckAsync(BackendEndpoint endpoint, HealthCheckConfig check, CancellationToken stopping)
    {
        string? problem;
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            deadline.CancelAfter(check.Timeout);
            using var probe = new HttpRequestMessage(HttpMethod.Get, endpoint.Prefix + check.Path) { Version = HttpVersion, VersionPolicy = HttpVersionPolicy };
            using HttpResponseMessage response = await endpoint.Invoker.SendAsync(probe, deadline.Token);
            int status = (int)response.StatusCode;
            problem = (check.ExpectedStatuses.Count == 0 ? status is >= 200 and < 400 : check.ExpectedStatuses.Contains(status)) ? null : $"{check.Path} answered {status}";
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException && !stopping.IsCancellationRequested)
        {
            problem = ex is OperationCanceledException ? $"{check.Path}: no answer within {Contracts.Duration.Format(check.Timeout)}" : $"{check.Path}: {ex.Message}";
        }

        bool passed = problem is null;
        if (!passed)
        {
            _metrics.HealthCheckFailed(_target.Display);
        }

        // A verdict in a row counts toward the threshold of the state it would move the endpoint to.
        endpoint.CheckStreak = passed == endpoint.Healthy ? 0 : endpoint.CheckStreak + 1;
        if (endpoint.Healthy && !passed && endpoint.CheckStreak >= check.UnhealthyThreshold)
        {
            endpoint.Healthy = false;
            endpoint.CheckStreak = 0;
            GatewayLog.Unhealthy(_logger, _target.Display, endpoint.Name, problem!);
        }
        else if (!endpoint.Healthy && passed && endpoint.CheckStreak >= check.HealthyThreshold)
        {
            endpoint.Healthy = true;
            endpoint.CheckStreak = 0;
            GatewayLog.Healthy(_logger, _target.Display, endpoint.Name);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _healthChecks.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        foreach (BackendEndpoint endpoint in Volatile.Read(ref _state).Endpoints)
        {
            endpoint.Invoker.Dispose();
        }

        await _limiter.DisposeAsync();
        _stopping.Dispose();
    }

    private sealed record State(object Version, IReadOnlyList<BackendEndpoint> Endpoints, HashRing? Ring);
}
