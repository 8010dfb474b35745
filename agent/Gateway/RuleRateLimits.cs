using System.Globalization;
using System.Threading.RateLimiting;

namespace NodeMesh.Gateway;

/// <summary>What a rule's rate limits decided for one request: let through (with what is left), or refused until when.</summary>
/// <param name="Limited">Refused: a limit had no permit left.</param>
/// <param name="Limit">The limit that decided: the one refusing, or when all passed the one with the fewest left.</param>
/// <param name="Remaining">Permits left under <paramref name="Limit"/> for this key.</param>
/// <param name="RetryAfter">When refused: how long until a permit comes back.</param>
internal readonly record struct RateLimitDecision(bool Limited, RateLimitConfig Limit, long Remaining, TimeSpan RetryAfter)
{
    /// <summary>Whole seconds, at least 1, as Retry-After and RateLimit-Reset are written.</summary>
    public string RetryAfterSeconds => Math.Max(1, (long)Math.Ceiling(RetryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    /// <summary>"10;w=1": the limit's requests and window in seconds (the RateLimit-Policy header's form).</summary>
    public string Policy => $"{Limit.Requests.ToString(CultureInfo.InvariantCulture)};w={Math.Max(1, (long)Math.Ceiling(Limit.Window.TotalSeconds)).ToString(CultureInfo.InvariantCulture)}";
}

/// <summary>
/// A rule's local rate limits (System.Threading.RateLimiting): one partitioned limiter per limit, partitioned by
/// its key — one partition for the whole rule, or one per client address or consumer (idle ones are dropped by the limiter).
/// Built with the rule's plan, so a reload starts the counts afresh. Never waits: a request over a limit is
/// refused at once.
/// </summary>
internal sealed class RuleRateLimits : IDisposable
{
    private readonly (RateLimitConfig Config, PartitionedRateLimiter<string> Limiter)[] _limits;

    private RuleRateLimits((RateLimitConfig, PartitionedRateLimiter<string>)[] limits) => _limits = limits;

    /// <summary>Null when the rule has no limits.</summary>
    public static RuleRateLimits? Of(IReadOnlyList<RateLimitConfig> limits) =>
        limits.Count == 0 ? null : new RuleRateLimits([.. limits.Select(l => (l, PartitionedRateLimiter.Create<string, string>(key => Partition(l, key))))]);

    /// <summary>
    /// Takes a permit of every limit for a request from <paramref name="client"/> (of <paramref name="consumer"/>, where
    /// known); the first limit without one refuses it.
    /// </summary>
    public RateLimitDecision Acquire(string client, string? consumer = null)
    {
        RateLimitDecision? tightest = null;
        foreach ((RateLimitConfig config, PartitionedRateLimiter<string> limiter) in _limits)
        {
            string key = config.Key switch
            {
                RateLimitKey.ClientAddress => client,
                RateLimitKey.Consumer => consumer ?? "",
                _ => "",
            };
            using RateLimitLease lease = limiter.AttemptAcquire(key);
            if (!lease.IsAcquired)
            {
                TimeSpan after = lease.TryGetMetadata(MetadataName.RetryAfter, out TimeSpan retryAfter) ? retryAfter : config.Window;
                return new RateLimitDecision(true, config, 0, after);
            }

            long remaining = limiter.GetStatistics(key)?.CurrentAvailablePermits ?? 0;
            if (tightest is null || remaining < tightest.Value.Remaining)
            {
                tightest = new RateLimitDecision(false, config, remaining, TimeSpan.Zero);
            }
        }

        return tightest!.Value;
    }

    public void Dispose()
    {
        foreach ((_, PartitionedRateLimiter<string> limiter) in _limits)
        {
            limiter.Dispose();
        }
    }

    // Each partition refills on its own timer, which refills exactly on every tick. The bucket gets k tokens every
    // window·k/requests, with k the smallest count that keeps the period at 100 ms or more: the average rate is
    // exactly the configured one, and there is never a timer much faster than that.
    private static RateLimitPartition<string> Partition(RateLimitConfig limit, string key)
    {
        if (limit.Algorithm == RateLimitAlgorithm.SlidingWindow)
        {
            return RateLimitPartition.GetSlidingWindowLimiter(key, _ => new SlidingWindowRateLimiterOptions
            {
                PermitLimit = limit.Requests,
                Window = limit.Window,
                SegmentsPerWindow = 10,
                QueueLimit = 0,
            });
        }

        int tokens = (int)Math.Clamp(Math.Ceiling(MinimumPeriod.Ticks * (double)limit.Requests / limit.Window.Ticks), 1, limit.Requests);
        return RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = limit.Burst > 0 ? limit.Burst : limit.Requests,
            TokensPerPeriod = tokens,
            ReplenishmentPeriod = TimeSpan.FromTicks(limit.Window.Ticks * tokens / limit.Requests),
            QueueLimit = 0,
        });
    }

    private static readonly TimeSpan MinimumPeriod = TimeSpan.FromMilliseconds(100);
}
