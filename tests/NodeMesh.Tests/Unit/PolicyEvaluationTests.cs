using System.Net;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Authz;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

public class PolicyEvaluationTests
{
    private const string Td = "cluster.local";
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Batch = SpiffeId.Parse("spiffe://cluster.local/ns/jobs/sa/batch");
    private static readonly SpiffeId CertManagerDot = SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/cert-manager.io");
    private static readonly SpiffeId CertManagerDash = SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/cert-manager-io");

    private static readonly Workload Db = new("db", IPAddress.Parse("10.240.2.2"), SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db"), "node2", "/var/run/netns/db")
    {
        Labels = new Dictionary<string, string> { ["app"] = "db", ["tier"] = "data" },
    };

    private static AuthzRequest From(SpiffeId? caller, int port = 5432, string ip = "10.240.1.2") => new(Db, port, caller, IPAddress.Parse(ip));

    private static PolicySet Compile(params PolicyConfig[] policies)
    {
        var errors = new List<string>();
        PolicySet set = PolicyCompiler.Compile(policies, Td, errors);
        Assert.Empty(errors);
        return set;
    }

    private static PolicyConfig Allow(string name, SourceConfig? from = null, DestinationConfig? to = null, SelectorConfig? selector = null, bool dryRun = false) =>
        new() { Name = name, Action = "ALLOW", Selector = selector ?? new(), DryRun = dryRun, Rules = [new RuleConfig { From = from, To = to }] };

    private static PolicyConfig Deny(string name, SourceConfig? from = null, DestinationConfig? to = null, bool dryRun = false) =>
        new() { Name = name, Action = "DENY", DryRun = dryRun, Rules = [new RuleConfig { From = from, To = to }] };

    [Fact]
    public void Authorizer_CountsEveryDecision_UnderThePolicyThatMadeIt()
    {
        using var metrics = new AuthzMetrics();
        using var decisions = new MetricCollector<long>(metrics.Meter, "nodemesh_authz_decisions_total");
        var authorizer = new Authorizer(metrics, NullLogger<Authorizer>.Instance);
        PolicySet webOnly = Compile(Allow("web-only", new SourceConfig { Principals = [Web.Uri] }), Deny("no-batch-admin", new SourceConfig { Principals = [Batch.Uri] }, new DestinationConfig { Ports = [22] }));

        authorizer.Authorize(PolicySet.Empty, From(Web), "tunnel");
        authorizer.Authorize(webOnly, From(Web), "tunnel");
        authorizer.Authorize(webOnly, From(Web), "tunnel");
        authorizer.Authorize(webOnly, From(Batch), "tunnel");
        authorizer.Authorize(webOnly, From(Batch, port: 22), "tunnel");

        string[] counted = [.. decisions.GetMeasurementSnapshot().Select(m =>
            $"{m.Tags["decision"]} {m.Tags["policy"]} {m.Tags["destination_workload"]} {m.Value}")];
        Assert.Equal(["allow default-allow db 1", "allow web-only db 1", "allow web-only db 1", "deny default-deny db 1", "deny no-batch-admin db 1"], counted);
        Assert.Equal(2, metrics.Denied);
    }

    [Fact]
    public void RequestPrincipals_MatchTheCallerAGatewayAuthenticated_Exactly()
    {
        SpiffeId gateway = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/gateway");
        PolicySet set = Compile(Allow("edge", new SourceConfig { Principals = [gateway.Uri], RequestPrincipals = ["consumer:shop-app", "https://idp.example.com/alice"] }));
        AuthzRequest Edge(string? principal) => new(Db, 5432, gateway, IPAddress.Parse("10.231.0.1"), principal);

        Assert.True(set.Evaluate(Edge("consumer:shop-app")).Allowed);
        Assert.True(set.Evaluate(Edge("https://idp.example.com/alice")).Allowed);
        Assert.False(set.Evaluate(Edge("consumer:other")).Allowed);
        Assert.False(set.Evaluate(Edge("consumer:Shop-app")).Allowed);
        Assert.False(set.Evaluate(Edge(null)).Allowed, "a flow without a principal never matches requestPrincipals");
        Assert.False(set.Evaluate(From(gateway)).Allowed);

        PolicySet any = Compile(Allow("any", new SourceConfig { RequestPrincipals = ["*"] }), Deny("not-bob", new SourceConfig { NotRequestPrincipals = ["consumer:alice"], RequestPrincipals = ["*"] }));
        Assert.True(any.Evaluate(Edge("consumer:alice")).Allowed);
        Assert.False(any.Evaluate(Edge("consumer:bob")).Allowed);
        Assert.False(any.Evaluate(Edge(null)).Allowed);

        var errors = new List<string>();
        PolicyCompiler.Compile([Allow("bad", new SourceConfig { RequestPrincipals = ["a\u0001b", ""] })], Td, errors);
        Assert.Equal(2, errors.Count(e => e.Contains("from.requestPrincipals", StringComparison.Ordinal) && e.Contains("is not a request principal", StringComparison.Ordinal)));
    }

    [Fact]
    public void NoPolicies_AllowEverything() => Assert.True(PolicySet.Empty.Evaluate(From(Web)).Allowed);

    [Fact]
    public void AllowList_AllowsTheListed_AndDeniesEveryoneElse()
    {
        PolicySet set = Compile(Allow("web-only", new SourceConfig { Principals = [Web.Uri] }));
        Assert.True(set.Evaluate(From(Web)).Allowed);
        AuthzDecision denied = set.Evaluate(From(Batch));
        Assert.False(denied.Allowed);
        Assert.Equal("no ALLOW policy matched", denied.Reason);
        Assert.False(set.Evaluate(From(null)).Allowed);
    }

    [Fact]
    public void Deny_BeatsAllow_AndNamesThePolicyAndRule()
    {
        PolicySet set = Compile(Allow("all", new SourceConfig { Principals = ["*"] }), Deny("no-web-admin", new SourceConfig { Principals = [Web.Uri] }, new DestinationConfig { Ports = [5432] }));
        AuthzDecision decision = set.Evaluate(From(Web));
        Assert.False(decision.Allowed);
        Assert.Equal("no-web-admin", decision.Policy);
        Assert.Equal(0, decision.Rule);
        Assert.True(set.Evaluate(From(Web, port: 80)).Allowed);
        Assert.True(set.Evaluate(From(Batch)).Allowed);
    }

    [Fact]
    public void AllowPolicyThatSelectsAnotherWorkload_DoesNotApply()
    {
        PolicySet set = Compile(Allow("for-api", new SourceConfig { Principals = [Web.Uri] }, selector: new SelectorConfig { Labels = new Dictionary<string, string> { ["app"] = "api" } }));
        Assert.True(set.Evaluate(From(Batch)).Allowed);
        set = Compile(Allow("for-db", new SourceConfig { Principals = [Web.Uri] }, selector: new SelectorConfig { Namespace = "shop", Labels = new Dictionary<string, string> { ["app"] = "db" } }));
        Assert.False(set.Evaluate(From(Batch)).Allowed);
    }

    [Fact]
    public void Principals_AreExact_NoRegexPrefixOrCase()
    {
        PolicySet set = Compile(Allow("dot", new SourceConfig { Principals = [CertManagerDot.Uri] }));
        Assert.True(set.Evaluate(From(CertManagerDot)).Allowed);
        Assert.False(set.Evaluate(From(CertManagerDash)).Allowed);
        set = Compile(Allow("ns-a", new SourceConfig { Namespaces = ["a"] }));
        Assert.False(set.Evaluate(From(SpiffeId.Parse("spiffe://cluster.local/ns/ab/sa/x"))).Allowed);
        Assert.True(set.Evaluate(From(SpiffeId.Parse("spiffe://cluster.local/ns/a/sa/x"))).Allowed);
    }

    [Fact]
    public void NegatedForms_Match_WhenTheValueIsNoneOfThoseListed()
    {
        PolicySet set = Compile(Deny("not-from-shop", new SourceConfig { NotNamespaces = ["shop"] }));
        Assert.True(set.Evaluate(From(Web)).Allowed);
        Assert.False(set.Evaluate(From(Batch)).Allowed);

        set = Compile(Allow("not-batch", new SourceConfig { NotPrincipals = [Batch.Uri] }, new DestinationConfig { NotPorts = [22] }));
        Assert.True(set.Evaluate(From(Web)).Allowed);
        Assert.False(set.Evaluate(From(Batch)).Allowed);
        Assert.False(set.Evaluate(From(Web, port: 22)).Allowed);
    }

    [Fact]
    public void IpBlocks_MatchSourceAddresses()
    {
        PolicySet set = Compile(Allow("node1-pods", new SourceConfig { IpBlocks = ["10.240.1.0/24"], NotIpBlocks = ["10.240.1.66"] }));
        Assert.True(set.Evaluate(From(null, ip: "10.240.1.9")).Allowed);
        Assert.False(set.Evaluate(From(null, ip: "10.240.1.66")).Allowed);
        Assert.False(set.Evaluate(From(Web, ip: "10.240.2.9")).Allowed);
    }

    [Fact]
    public void UnauthenticatedCaller_NeverMatchesPrincipalsOrNamespaces()
    {
        PolicySet set = Compile(Allow("any-mesh", new SourceConfig { Principals = ["*"] }));
        Assert.True(set.Evaluate(From(Web)).Allowed);
        Assert.False(set.Evaluate(From(null)).Allowed);
    }

    [Fact]
    public void DryRun_DeniesNothing_ButSaysWhatItWouldDeny()
    {
        PolicySet set = Compile(Deny("would-block-web", new SourceConfig { Principals = [Web.Uri] }, dryRun: true));
        AuthzDecision decision = set.Evaluate(From(Web));
        Assert.True(decision.Allowed);
        Assert.Equal("would-block-web", decision.DryRunDeniedBy);
        Assert.Null(set.Evaluate(From(Batch)).DryRunDeniedBy);

        set = Compile(Allow("would-allow-only-web", new SourceConfig { Principals = [Web.Uri] }, dryRun: true));
        Assert.True(set.Evaluate(From(Batch)).Allowed);
        Assert.NotNull(set.Evaluate(From(Batch)).DryRunDeniedBy);
        Assert.Null(set.Evaluate(From(Web)).DryRunDeniedBy);
    }

    [Fact]
    public void EmptyRuleList_MatchesNothing_SoAnAllowPolicyWithoutRulesDeniesAll()
    {
        PolicySet set = Compile(new PolicyConfig { Name = "lockdown", Action = "ALLOW" });
        Assert.False(set.Evaluate(From(Web)).Allowed);
    }

    [Fact]
    public void Compile_ReportsEveryBadField_WithItsPath()
    {
        var errors = new List<string>();
        PolicyCompiler.Compile(
        [
            new PolicyConfig
            {
                Name = "Bad Name",
                Action = "PERMIT",
                Selector = new SelectorConfig { Namespace = "a.b", Identities = ["spiffe://other.td/ns/a/sa/b"] },
                Rules =
                [
                    new RuleConfig
                    {
                        From = new SourceConfig { Principals = ["spiffe://cluster.local/ns/a/sa/b;x"], IpBlocks = ["10.0.0.1/24", "10.0.0.0/33", "-j ACCEPT"] },
                        To = new DestinationConfig { Ports = [0, 70000] },
                    },
                ],
            },
        ], Td, errors);
        Assert.Contains(errors, e => e.StartsWith("policies[0].name:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].action: 'PERMIT' must be ALLOW or DENY", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].selector.namespace:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].selector.identities[0]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].from.principals[0]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].from.ipBlocks[0]: '10.0.0.1/24' has host bits set; did you mean 10.0.0.0/24?", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].from.ipBlocks[1]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].from.ipBlocks[2]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].to.ports[0]:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("policies[0].rules[0].to.ports[1]:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("10.0.0.0/8", "10.255.1.1", true)]
    [InlineData("10.0.0.0/8", "11.0.0.1", false)]
    [InlineData("0.0.0.0/0", "192.168.1.1", true)]
    [InlineData("192.168.1.7", "192.168.1.7", true)]
    [InlineData("192.168.1.7", "192.168.1.8", false)]
    public void Cidr_Contains(string block, string address, bool expected)
    {
        Assert.True(Cidr.TryParse(block, out Cidr? cidr, out string? error), error);
        Assert.Equal(expected, cidr.Value.Contains(IPAddress.Parse(address)));
    }
}
