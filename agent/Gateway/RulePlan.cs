using Polly;
using Polly.Retry;

namespace NodeMesh.Gateway;

/// <summary>A backend a rule sends to: a mesh service (its endpoints are the registry's) or a plain address.</summary>
/// <param name="MeshService">The registry service it names; null: a plain address outside the mesh.</param>
internal sealed record BackendTarget(BackendRefConfig Ref, string? MeshService)
{
    /// <summary>Shown in logs, metrics and the access log: the service's name and port, or the address.</summary>
    public string Display { get; } = MeshService is null ? Ref.Address : $"{MeshService}:{Ref.Port}";

    /// <summary>The backendRef's own RequestHeaderModifier: applied after the rule's, only when this backend is chosen.</summary>
    public HeaderModifierConfig? RequestHeaders { get; } = Ref.Filters.FirstOrDefault(f => f.Type == HttpRouteFilterType.RequestHeaderModifier)?.RequestHeaderModifier;

    /// <summary>The backendRef's own ResponseHeaderModifier, after the rule's.</summary>
    public HeaderModifierConfig? ResponseHeaders { get; } = Ref.Filters.FirstOrDefault(f => f.Type == HttpRouteFilterType.ResponseHeaderModifier)?.ResponseHeaderModifier;

    /// <summary>The service's name, or the address: <c>destination_service_name</c>.</summary>
    public string Name => MeshService ?? Ref.Address;

    public static BackendTarget Of(BackendRefConfig backend) => backend.Address.Length > 0 ? new BackendTarget(backend, null) : new BackendTarget(backend, backend.Name);

    /// <summary>
    /// The host name in a mesh backend's request URIs (the Host header is the client's or the rewrite's). Its
    /// connections are the endpoint's tunnel flows; the suffix keeps it from ever being resolved by DNS.
    /// </summary>
    public static string MeshHost(string service) => service + MeshSuffix;

    public const string MeshSuffix = ".mesh.nodemesh.invalid";
}

/// <summary>One rule of one route, ready to serve: its filters sorted by kind and its backends resolved.</summary>
internal sealed record RulePlan(
    string RouteName,
    string RuleName,
    HeaderModifierConfig? RequestHeaders,
    HeaderModifierConfig? ResponseHeaders,
    RequestRedirectConfig? Redirect,
    UrlRewriteConfig? Rewrite,
    IReadOnlyList<RequestMirrorConfig> Mirrors,
    IReadOnlyList<BackendTarget> Backends,
    int TotalWeight,
    HttpRouteTimeoutsConfig Timeouts,
    HttpRouteRetryConfig? Retry)
{
    /// <summary>The rule's retries (Polly's retry strategy: attempts, exponential backoff from the rule's); null: none.</summary>
    public ResiliencePipeline<AttemptOutcome>? Retries { get; init; }

    /// <summary>How many retries may be in flight at once; null with <see cref="Retries"/>.</summary>
    public RetryBudget? Budget { get; init; }

    /// <summary>The token the rule requires; null: none.</summary>
    public RuleJwtConfig? Jwt { get; init; }

    /// <summary>The consumer the rule requires; null: none.</summary>
    public RuleConsumersConfig? Consumers { get; init; }

    /// <summary>The rule's local rate limits; null: none.</summary>
    public RuleRateLimits? RateLimits { get; init; }

    /// <summary>route/rule (or route/RULE_INDEX), as logs and metrics name it.</summary>
    public string Display { get; } = RouteName + "/" + RuleName;

    public static RulePlan Of(HttpRouteConfig route, HttpRouteRuleConfig rule, int index)
    {
        HeaderModifierConfig? requestHeaders = null, responseHeaders = null;
        RequestRedirectConfig? redirect = null;
        UrlRewriteConfig? rewrite = null;
        var mirrors = new List<RequestMirrorConfig>();
        foreach (HttpRouteFilterConfig filter in rule.Filters)
        {
            switch (filter.Type)
            {
                case HttpRouteFilterType.RequestHeaderModifier:
                    requestHeaders = filter.RequestHeaderModifier;
                    break;
                case HttpRouteFilterType.ResponseHeaderModifier:
                    responseHeaders = filter.ResponseHeaderModifier;
                    break;
                case HttpRouteFilterType.RequestRedirect:
                    redirect = filter.RequestRedirect;
                    break;
                case HttpRouteFilterType.UrlRewrite:
                    rewrite = filter.UrlRewrite;
                    break;
                case HttpRouteFilterType.RequestMirror when filter.RequestMirror is not null:
                    mirrors.Add(filter.RequestMirror);
                    break;
            }
        }

        List<BackendTarget> backends = [.. rule.BackendRefs.Select(BackendTarget.Of)];
        RetryBudget? budget = rule.Retry is { Attempts: > 0 } r ? new RetryBudget(r.BudgetPercent, r.MinRetryConcurrency) : null;
        return new RulePlan(route.Name, rule.Name.Length > 0 ? rule.Name : index.ToString(System.Globalization.CultureInfo.InvariantCulture),
            requestHeaders, responseHeaders, redirect, rewrite, mirrors, backends, RequestRewrite.TotalWeight(rule.BackendRefs), rule.Timeouts, rule.Retry)
        {
            Retries = rule.Retry is { Attempts: > 0 } retry ? RetryPipeline(retry, budget!) : null,
            Budget = budget,
            RateLimits = RuleRateLimits.Of(rule.RateLimits),
            Jwt = rule.Jwt,
            Consumers = rule.Consumers,
        };
    }

    /// <summary>
    /// Another attempt after one whose answer was held back (a listed code), that could not connect, that timed
    /// out, or that found no endpoint; never after the response began (nothing can be taken back then), and only
    /// while the budget has room (the attempt gives its place back when it ends).
    /// </summary>
    private static ResiliencePipeline<AttemptOutcome> RetryPipeline(HttpRouteRetryConfig retry, RetryBudget budget) =>
        new ResiliencePipelineBuilder<AttemptOutcome>().AddRetry(new RetryStrategyOptions<AttemptOutcome>
        {
            MaxRetryAttempts = retry.Attempts,
            Delay = retry.Backoff,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = false,
            ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is null && args.Outcome.Result.Retryable && budget.TryStartRetry()),
        }).Build();

    /// <summary>The backend for a draw in [0, <see cref="TotalWeight"/>).</summary>
    public BackendTarget? Choose(int pick)
    {
        for (int i = 0; i < Backends.Count; i++)
        {
            int weight = Backends[i].Ref.Weight;
            if (pick < weight)
            {
                return Backends[i];
            }

            pick -= weight;
        }

        return null;
    }
}
