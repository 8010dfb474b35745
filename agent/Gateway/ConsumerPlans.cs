using NodeMesh.Consumers;

namespace NodeMesh.Gateway;

/// <summary>What a consumer's plan decided for one request.</summary>
/// <param name="Limit">Refused by one of the plan's rate limits: that decision (429 with its headers); else its tightest, or null when the plan has none.</param>
/// <param name="QuotaExceeded">Refused: the day's quota is used up (429 until UTC midnight).</param>
/// <param name="UnknownPlan">The consumer names a plan the configuration no longer has (403: never unlimited by mistake).</param>
internal readonly record struct PlanDecision(RateLimitDecision? Limit, bool QuotaExceeded, bool UnknownPlan, long DailyQuota)
{
    public bool Allowed => !QuotaExceeded && !UnknownPlan && Limit is not { Limited: true };
}

/// <summary>
/// The plans of <c>gateway.plans</c>, enforced per consumer across every rule that identifies consumers: each plan's
/// rate limits (one partition per consumer), then its daily quota, counted in <see cref="ConsumerUsage"/>. A
/// consumer without a plan has neither; its requests are still counted.
/// </summary>
internal sealed class ConsumerPlans : IDisposable
{
    private readonly Dictionary<string, (PlanConfig Plan, RuleRateLimits? Limits)> _plans = new(StringComparer.Ordinal);
    private readonly ConsumerUsage _usage;

    public ConsumerPlans(IReadOnlyList<PlanConfig> plans, ConsumerUsage usage)
    {
        _usage = usage;
        foreach (PlanConfig plan in plans)
        {
            _plans[plan.Name] = (plan, RuleRateLimits.Of([.. plan.RateLimits.Select(l => l.ToRateLimit())]));
        }
    }

    public ConsumerUsage Usage => _usage;

    /// <summary>The plan's daily quota (0: none); null when there is no such plan. An empty name is no plan: no quota.</summary>
    public long? DailyQuota(string plan) => plan.Length == 0 ? 0 : _plans.TryGetValue(plan, out (PlanConfig Plan, RuleRateLimits? _) found) ? found.Plan.DailyQuota : null;

    /// <summary>Takes the consumer's permits: its plan's limits first (a refusal there does not spend quota), then a unit of its quota.</summary>
    public PlanDecision Admit(ConsumerRecord consumer)
    {
        if (consumer.Plan.Length == 0)
        {
            _usage.TryCount(consumer.Name, 0);
            return new PlanDecision(null, false, false, 0);
        }

        if (!_plans.TryGetValue(consumer.Plan, out (PlanConfig Plan, RuleRateLimits? Limits) plan))
        {
            _usage.Refused(consumer.Name);
            return new PlanDecision(null, false, true, 0);
        }

        RateLimitDecision? limit = plan.Limits?.Acquire("", consumer.Name);
        if (limit is { Limited: true })
        {
            _usage.Refused(consumer.Name);
            return new PlanDecision(limit, false, false, plan.Plan.DailyQuota);
        }

        bool counted = _usage.TryCount(consumer.Name, plan.Plan.DailyQuota);
        return new PlanDecision(limit, !counted, false, plan.Plan.DailyQuota);
    }

    public void Dispose()
    {
        foreach ((_, RuleRateLimits? limits) in _plans.Values)
        {
            limits?.Dispose();
        }
    }
}
