using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>A rule's local rate limits decided without sockets: windows long enough that no refill happens during a test.</summary>
public class RuleRateLimitsTests
{
    private static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    [Fact]
    public void ATokenBucketPerClient_LetsItsRequestsThrough_ThenRefusesWithWhenToComeBack()
    {
        using RuleRateLimits limits = RuleRateLimits.Of([new RateLimitConfig { Key = RateLimitKey.ClientAddress, Requests = 3, Window = Minute }])!;
        Assert.Equal([2L, 1L, 0L], Enumerable.Range(0, 3).Select(_ => limits.Acquire("10.0.0.1")).Select(d => d.Limited ? -1 : d.Remaining));
        RateLimitDecision refused = limits.Acquire("10.0.0.1");
        Assert.True(refused.Limited);
        Assert.InRange(refused.RetryAfter, TimeSpan.FromSeconds(1), Minute);
        Assert.Equal("3;w=60", refused.Policy);

        // Another client has its own bucket.
        Assert.False(limits.Acquire("10.0.0.2").Limited);
    }

    [Fact]
    public void ABurst_IsTheBucketsSize_AndTheRateRefillsIt()
    {
        using RuleRateLimits limits = RuleRateLimits.Of([new RateLimitConfig { Requests = 600, Window = Minute, Burst = 2 }])!;
        Assert.False(limits.Acquire("c").Limited);
        Assert.False(limits.Acquire("c").Limited);
        RateLimitDecision refused = limits.Acquire("c");
        Assert.True(refused.Limited);

        // 600 a minute is one every 100 ms: the wait is the refill period, not the whole minute.
        Assert.InRange(refused.RetryAfter, TimeSpan.FromMilliseconds(1), TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void ARouteWideSlidingWindow_IsSharedByAllClients_AndEveryLimitMustPass()
    {
        using RuleRateLimits limits = RuleRateLimits.Of([
            new RateLimitConfig { Key = RateLimitKey.ClientAddress, Requests = 3, Window = Minute },
            new RateLimitConfig { Key = RateLimitKey.Route, Algorithm = RateLimitAlgorithm.SlidingWindow, Requests = 4, Window = Minute }])!;
        Assert.All(Enumerable.Range(0, 3).Select(_ => limits.Acquire("a")), d => Assert.False(d.Limited));

        // The tightest limit is the one reported: after a's three, b has 2 of its own left but the rule only 0.
        RateLimitDecision b = limits.Acquire("b");
        Assert.False(b.Limited);
        Assert.Equal((RateLimitKey.Route, 0L), (b.Limit.Key, b.Remaining));
        RateLimitDecision refused = limits.Acquire("c");
        Assert.True(refused.Limited);
        Assert.Equal(RateLimitKey.Route, refused.Limit.Key);
    }

    [Fact]
    public void NoLimits_NoLimiter() => Assert.Null(RuleRateLimits.Of([]));
}
