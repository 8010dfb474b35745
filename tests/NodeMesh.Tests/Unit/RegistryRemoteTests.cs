using System.Net;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

/// <summary>A discovery source's view replaces the remote workloads and peers at once, and never a local workload.</summary>
public sealed class RegistryRemoteTests
{
    private static readonly Workload Local = new("web", IPAddress.Parse("10.240.1.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/web"), "node1", "/var/run/netns/web");

    private static Workload Remote(string name, string ip, string node) => new(name, IPAddress.Parse(ip), SpiffeId.Parse($"spiffe://td/ns/a/sa/{name}"), node, null);

    [Fact]
    public void ReplaceRemote_SwapsRemoteWorkloadsAndPeers_KeepsLocal_AndRefusesClaimsOnLocalNamesOrAddresses()
    {
        var registry = new WorkloadRegistry();
        registry.Reset(new RegistrySnapshot([Local], new Dictionary<string, IPEndPoint>()));
        var peers = new Dictionary<string, IPEndPoint> { ["node2"] = IPEndPoint.Parse("10.231.0.2:15008") };

        IReadOnlyList<string> conflicts = registry.ReplaceRemote(
            [Remote("db", "10.240.2.2", "node2"), Remote("thief", "10.240.1.2", "node2"), Remote("web", "10.240.2.9", "node2"), Remote("dup", "10.240.2.2", "node3")], peers);

        RegistrySnapshot now = registry.Current;
        Assert.Equal(Local, now.FindByIp(Local.Ip));
        Assert.Equal("db", now.FindByIp(IPAddress.Parse("10.240.2.2"))?.Name);
        Assert.Null(now.FindByIp(IPAddress.Parse("10.240.2.9")));
        Assert.Equal(peers, now.PeerNodes);
        Assert.Equal(3, conflicts.Count);
        Assert.Contains(conflicts, c => c.StartsWith("thief on node2: address 10.240.1.2 is already web's", StringComparison.Ordinal));
        Assert.Contains(conflicts, c => c.StartsWith("web on node2: the name is already registered", StringComparison.Ordinal));

        // The next view replaces the last: db gone, node2 gone.
        registry.ReplaceRemote([Remote("cache", "10.240.3.2", "node3")], new Dictionary<string, IPEndPoint> { ["node3"] = IPEndPoint.Parse("10.231.0.3:15008") });
        Assert.Null(registry.Current.FindByIp(IPAddress.Parse("10.240.2.2")));
        Assert.Equal(["node3"], registry.Current.PeerNodes.Keys);
        Assert.Equal(2, registry.Current.Workloads.Count());
    }

    [Fact]
    public async Task WaitForChange_CompletesAtTheNextSwap_OrSaysNoneCameInTime()
    {
        var registry = new WorkloadRegistry();
        long version = registry.Version;
        Assert.False(await registry.WaitForChangeAsync(version, TimeSpan.FromMilliseconds(50), CancellationToken.None));

        Task<bool> waiting = registry.WaitForChangeAsync(version, TimeSpan.FromSeconds(30), CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        registry.ReplaceRemote([Remote("db", "10.240.2.2", "node2")], new Dictionary<string, IPEndPoint>());
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));

        // A change that came before the wait began is seen at once.
        Assert.True(await registry.WaitForChangeAsync(version, TimeSpan.FromSeconds(30), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(1)));
    }

    [Fact]
    public async Task WaitUntil_IsTrueAtTheChangeThatMakesTheConditionHold_NotAtOthers_AndFalseAtTheTimeout()
    {
        var registry = new WorkloadRegistry();
        IPAddress db = IPAddress.Parse("10.240.2.2");
        Task<bool> waiting = registry.WaitUntilAsync(s => s.FindByIp(db) is not null, TimeSpan.FromSeconds(30), CancellationToken.None);
        registry.ReplaceRemote([Remote("cache", "10.240.3.2", "node3")], new Dictionary<string, IPEndPoint>());
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);
        registry.ReplaceRemote([Remote("db", "10.240.2.2", "node2")], new Dictionary<string, IPEndPoint>());
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));

        Assert.False(await registry.WaitUntilAsync(s => s.FindByIp(IPAddress.Parse("10.240.9.9")) is not null, TimeSpan.FromMilliseconds(50), CancellationToken.None));
    }
}
