using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>The load-balancing policies over a backend's endpoints, without sockets.</summary>
public class EndpointChooserTests
{
    private static BackendEndpoint[] Endpoints(int n) =>
        [.. Enumerable.Range(0, n).Select(i => new BackendEndpoint($"e{i}", $"e{i}@10.0.0.{i}", "http://x", new HttpMessageInvoker(new SocketsHttpHandler())))];

    private static int Choose(LoadBalancerType type, BackendEndpoint[] endpoints, ref int rr, Func<BackendEndpoint, bool>? available = null, HashRing? ring = null, string? key = null, Random? random = null) =>
        EndpointChooser.Choose(type, endpoints, available ?? (_ => true), ref rr, ring, key, random ?? new Random(7));

    [Fact]
    public void RoundRobin_TakesEachInTurn_SkippingTheUnavailable()
    {
        BackendEndpoint[] e = Endpoints(3);
        int rr = 0;
        Assert.Equal([1, 2, 0, 1, 2, 0], Enumerable.Range(0, 6).Select(_ => Choose(LoadBalancerType.RoundRobin, e, ref rr)));
        Assert.Equal([2, 0, 2, 0], Enumerable.Range(0, 4).Select(_ => Choose(LoadBalancerType.RoundRobin, e, ref rr, x => x.Name != "e1")));
        Assert.Equal(-1, Choose(LoadBalancerType.RoundRobin, e, ref rr, _ => false));
    }

    [Fact]
    public void LeastRequest_TakesTheIdlest_AndSharesTies()
    {
        BackendEndpoint[] e = Endpoints(3);
        e[0].Started();
        e[0].Started();
        e[2].Started();
        int rr = 0;
        Assert.Equal(1, Choose(LoadBalancerType.LeastRequest, e, ref rr));
        e[1].Started();
        e[1].Started();

        // e1 and e0 now carry two, e2 one: e2; then with all equal, every one is taken sometimes.
        Assert.Equal(2, Choose(LoadBalancerType.LeastRequest, e, ref rr));
        e[2].Started();
        var random = new Random(1);
        var seen = Enumerable.Range(0, 200).Select(_ => Choose(LoadBalancerType.LeastRequest, e, ref rr, random: random)).ToHashSet();
        Assert.Equal([0, 1, 2], seen.Order());
    }

    [Fact]
    public void PowerOfTwoChoices_PrefersTheLessLoaded_AndNeverTheUnavailable()
    {
        BackendEndpoint[] e = Endpoints(2);
        for (int i = 0; i < 10; i++)
        {
            e[0].Started();
        }

        int rr = 0;
        var random = new Random(3);
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(1, Choose(LoadBalancerType.PowerOfTwoChoices, e, ref rr, random: random)));
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(0, Choose(LoadBalancerType.PowerOfTwoChoices, e, ref rr, x => x.Name == "e0", random: random)));
    }

    [Fact]
    public void ConsistentHash_SendsAKeyToOneEndpoint_AndMovesOnlyTheKeysOfOneThatLeaves()
    {
        BackendEndpoint[] e = Endpoints(4);
        var ring = new HashRing([.. e.Select(x => x.Key)]);
        int rr = 0;
        string[] keys = [.. Enumerable.Range(0, 400).Select(i => $"user-{i}")];
        int[] before = [.. keys.Select(k => Choose(LoadBalancerType.ConsistentHash, e, ref rr, ring: ring, key: k))];
        Assert.Equal(before, keys.Select(k => Choose(LoadBalancerType.ConsistentHash, e, ref rr, ring: ring, key: k)));

        // Every endpoint owns a fair share (64 points each: within a factor of two of a quarter).
        Assert.All(Enumerable.Range(0, 4), i => Assert.InRange(before.Count(b => b == i), 50, 200));

        // e2 unavailable: its keys go elsewhere, every other key stays where it was.
        int[] after = [.. keys.Select(k => Choose(LoadBalancerType.ConsistentHash, e, ref rr, x => x.Name != "e2", ring, k))];
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.True(before[i] == 2 ? after[i] != 2 : after[i] == before[i], $"{keys[i]}: {before[i]} -> {after[i]}");
        }
    }

    [Fact]
    public void TheHash_IsStableAcrossRuns() =>
        // A fixed value: a node that restarts, or another node, sends a key where this one did.
        Assert.Equal(EndpointChooser.Hash("user-1"), EndpointChooser.Hash(string.Concat("user-", "1")));
}
