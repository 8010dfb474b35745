using System.Net;
using CsCheck;
using NodeMesh.Authz;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// The policy compiler against generated policy objects, nulls anywhere the reader can leave them: it never
/// throws, every error names its field under <c>policies[i]</c>, and a set that compiled without errors
/// evaluates any request without throwing.
/// </summary>
public sealed class PolicyFuzzTests
{
    private const string Td = "cluster.local";

    private static readonly Gen<string> Text = Gen.OneOf(
        Gen.OneOf("", "*", "web", "shop", "a-b", "-a", "A", "ALLOW", "DENY", "allow", "app", "example.com/team", "v v", "kube-system",
            "spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/jobs/sa/batch", "spiffe://other/ns/a/sa/b",
            "spiffe://cluster.local/ns/shop/sa/", "spiffe://cluster.local/ns/Shop/sa/web", "10.0.0.0/8", "10.0.0.1", "10.0.0.1/24",
            "0.0.0.0/0", "1.2.3.4/33", "1.2.3.4/", "/8", "::1", "10.0.0.0/08", new string('a', 64), new string('a', 254)),
        Gen.String[0, 20]);

    private static readonly Gen<string?> MaybeText = Text.Null();

    private static readonly Gen<IReadOnlyList<string>?> Strings = MaybeText.Array[0, 4].Select(a => (IReadOnlyList<string>)a!).Null();

    private static readonly Gen<IReadOnlyList<int>?> Ports =
        Gen.OneOf(Gen.Int[-2, 70_000], Gen.OneOf(0, 1, 65535, 65536, int.MinValue, int.MaxValue)).Array[0, 4].Select(a => (IReadOnlyList<int>)a).Null();

    private static readonly Gen<SelectorConfig?> Selector =
        Gen.Select(MaybeText, Gen.Dictionary(Text, MaybeText)[0, 3].Null(), Strings, (ns, labels, ids) =>
            new SelectorConfig { Namespace = ns, Labels = labels is null ? null : labels.ToDictionary(k => k.Key, k => k.Value!), Identities = ids }).Null();

    private static readonly Gen<RuleConfig?> Rule =
        Gen.Select(
            Gen.Select(Strings, Strings, Strings, Strings, Strings, Strings, (p, np, n, nn, ip, nip) =>
                new SourceConfig { Principals = p, NotPrincipals = np, Namespaces = n, NotNamespaces = nn, IpBlocks = ip, NotIpBlocks = nip }).Null(),
            Gen.Select(Ports, Ports, (ports, notPorts) => new DestinationConfig { Ports = ports, NotPorts = notPorts }).Null(),
            (from, to) => new RuleConfig { From = from, To = to }).Null();

    private static readonly Gen<PolicyConfig?> Policy =
        Gen.Select(MaybeText, MaybeText, Gen.Bool, Selector, Rule.Array[0, 3].Null(), (name, action, dryRun, selector, rules) =>
            new PolicyConfig { Name = name!, Action = action!, DryRun = dryRun, Selector = selector!, Rules = rules! }).Null();

    private static readonly Gen<AuthzRequest> Request =
        Gen.Select(Gen.OneOf("web", "db"), Gen.Int[1, 65535], Gen.OneOf<SpiffeId?>(null,
                SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web"), SpiffeId.Parse("spiffe://cluster.local/ns/jobs/sa/batch")), Gen.UInt,
            (name, port, caller, source) => new AuthzRequest(
                new Workload(name, IPAddress.Parse("10.240.1.2"), SpiffeId.Parse($"spiffe://cluster.local/ns/shop/sa/{name}"), "node1", "/var/run/netns/x")
                {
                    Labels = new Dictionary<string, string> { ["app"] = name },
                },
                port, caller, new IPAddress(source)));

    [Fact]
    public void GeneratedPolicies_CompileOrAreRefusedWithFieldPaths_AndWhatCompilesEvaluatesAnyRequest()
    {
        Gen.Select(Policy.Array[0, 4], Request.Array[1, 4]).Sample((configs, requests) =>
        {
            var errors = new List<string>();
            PolicySet set = PolicyCompiler.Compile(configs!, Td, errors);
            foreach (string error in errors)
            {
                Assert.Matches(@"^policies\[\d+\](\.[a-zA-Z]+(\[\d+\])?)*: \S", error);
            }

            if (errors.Count == 0)
            {
                Assert.Equal(configs.Length, set.Policies.Count);
                foreach (AuthzRequest request in requests)
                {
                    AuthzDecision decision = set.Evaluate(request);
                    Assert.False(string.IsNullOrEmpty(decision.Reason));
                }
            }
        }, iter: FuzzBudget.Iterations(3_000), seed: FuzzBudget.Seed);
    }
}
