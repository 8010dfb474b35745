using Microsoft.AspNetCore.Http;
using NodeMesh.Consumers;
using NodeMesh.Contracts;
using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Consumers;

/// <summary>A rule's consumer requirement and a plan's limits, decided on requests made in memory.</summary>
public sealed class ConsumerAuthenticatorTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private sealed class FixedStore(ConsumerDirectory directory) : IConsumerStore
    {
        public string Describe => "memory";

        public ConsumerDirectory Current { get; set; } = directory;

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task<ConsumerRecord?> ChangeAsync(string name, Func<ConsumerRecord?, ConsumerRecord?> change, CancellationToken cancellationToken) => throw new NotSupportedException();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private static (ConsumerRecord Consumer, string Key) Consumer(string name, string plan = "", string state = ConsumerStates.Active)
    {
        ConsumerRecord consumer = ConsumerRules.IssueKey(ConsumerRules.Create(null, new ConsumerChange { Name = name, Plan = plan }, Now), name, null, Now, out string key);
        return (consumer with { State = state }, key);
    }

    private static DefaultHttpContext Request(string? header = null, string query = "")
    {
        var context = new DefaultHttpContext();
        context.Request.QueryString = new QueryString(query);
        if (header is not null)
        {
            context.Request.Headers["x-api-key"] = header;
        }

        return context;
    }

    [Fact]
    public void AKey_NamesItsConsumer_AndIsTakenOffTheRequest()
    {
        (ConsumerRecord app, string key) = Consumer("app");
        (ConsumerRecord off, string offKey) = Consumer("off", state: ConsumerStates.Disabled);
        var authenticator = new ConsumerAuthenticator(new FixedStore(new ConsumerDirectory([app, off])), new ManualClock(Now));
        var rule = new RuleConsumersConfig { ApiKeyQueryParameter = "apikey" };

        DefaultHttpContext byHeader = Request(key);
        Assert.Equal("app", authenticator.Identify(byHeader, rule).Consumer?.Name);
        Assert.False(byHeader.Request.Headers.ContainsKey("x-api-key"));

        DefaultHttpContext byQuery = Request(query: $"?a=1&apikey={key}&b=2");
        Assert.True(authenticator.Identify(byQuery, rule).Ok);
        Assert.Equal("?a=1&b=2", byQuery.Request.QueryString.Value);

        ConsumerVerdict none = authenticator.Identify(Request(), rule);
        Assert.Equal(401, none.Status);
        Assert.Contains("header=\"x-api-key\"", none.Challenge, StringComparison.Ordinal);
        Assert.Equal(401, authenticator.Identify(Request("nmk_wrong"), rule).Status);
        Assert.Equal((403, "consumer off is disabled"), (authenticator.Identify(Request(offKey), rule) is var v ? (v.Status, v.Reason) : default));
        Assert.Equal(403, authenticator.Identify(Request(key), rule with { Allowed = ["other"] }).Status);
        Assert.True(authenticator.Identify(Request(key), rule with { Allowed = ["app"] }).Ok);
    }

    [Fact]
    public void BeforeTheConsumersAreRead_ARequestIsAnswered503_Not401()
    {
        (_, string key) = Consumer("app");
        var authenticator = new ConsumerAuthenticator(new FixedStore(ConsumerDirectory.NotLoaded));
        Assert.Equal(503, authenticator.Identify(Request(key), new RuleConsumersConfig()).Status);
    }

    [Fact]
    public void APlan_LimitsEachConsumer_ThenItsQuota_AndAnUnknownPlanIsRefused()
    {
        var plans = new ConsumerPlans(
            [new PlanConfig { Name = "gold", RateLimits = [new PlanRateLimitConfig { Requests = 2, Window = TimeSpan.FromHours(1) }], DailyQuota = 3 },
             new PlanConfig { Name = "free", DailyQuota = 1 }],
            new ConsumerUsage(null));
        ConsumerRecord a = Consumer("a", "gold").Consumer, b = Consumer("b", "gold").Consumer, c = Consumer("c", "free").Consumer;

        Assert.Equal([true, true, false], Enumerable.Range(0, 3).Select(_ => plans.Admit(a).Allowed));
        PlanDecision limited = plans.Admit(a);
        Assert.True(limited.Limit is { Limited: true } && !limited.QuotaExceeded, "the plan's rate limit refuses first");
        Assert.True(plans.Admit(b).Allowed, "each consumer has its own limit");

        Assert.True(plans.Admit(c).Allowed);
        PlanDecision quota = plans.Admit(c);
        Assert.True(quota.QuotaExceeded && quota.DailyQuota == 1);
        Assert.Equal((1L, 1L), (plans.Usage.Of("c", 1).RequestsToday, plans.Usage.Of("c", 1).Refused));

        Assert.True(plans.Admit(Consumer("d", "gone").Consumer).UnknownPlan);
        Assert.True(plans.Admit(Consumer("e").Consumer).Allowed, "no plan: no limits");
        Assert.Equal((long?)3, plans.DailyQuota("gold"));
        Assert.Null(plans.DailyQuota("gone"));
    }
}
