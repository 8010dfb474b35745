using System.Net;
using NodeMesh.Authz;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

/// <summary>A reload's labels, modes and policies are published as one registry snapshot.</summary>
public sealed class RegistryReconfigureTests
{
    private static readonly Workload Db = new("db", IPAddress.Parse("10.240.1.2"), SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db"), "node1", "/var/run/netns/db");
    private static readonly IReadOnlyDictionary<string, IPEndPoint> Peers = new Dictionary<string, IPEndPoint> { ["node2"] = new(IPAddress.Parse("10.231.0.2"), 15008) };

    private static PolicySet Generation(int n)
    {
        var errors = new List<string>();
        PolicySet set = PolicyCompiler.Compile(
            [new PolicyConfig { Name = $"gen-{n}", Action = "ALLOW", Selector = new SelectorConfig { Labels = new Dictionary<string, string> { ["gen"] = $"{n}" } }, Rules = [new RuleConfig { From = new SourceConfig { Principals = ["*"] } }] }],
            "cluster.local", errors);
        Assert.Empty(errors);
        return set;
    }

    private static Workload Labelled(int n) => Db with { Labels = new Dictionary<string, string> { ["gen"] = $"{n}" }, Mode = n % 2 == 0 ? PeerMode.Strict : PeerMode.Permissive };

    [Fact]
    public void Reconfigure_PublishesLabelsModesAndPolicies_AsOneSnapshot()
    {
        var registry = new WorkloadRegistry();
        registry.Reset(new RegistrySnapshot([Labelled(1)], Peers, Generation(1)));
        long before = registry.Version;
        Workload stranger = Db with { Name = "not-registered", Ip = IPAddress.Parse("10.240.1.9") };

        RegistrySnapshot now = registry.Reconfigure([Labelled(2), stranger], Generation(2));

        Assert.Equal(before + 1, registry.Version);
        Assert.Same(now, registry.Current);
        Assert.Equal("2", now.FindByIp(Db.Ip)!.Labels["gen"]);
        Assert.Equal(PeerMode.Strict, now.FindByIp(Db.Ip)!.Mode);
        Assert.Equal("gen-2", Assert.Single(now.Policies.Policies).Name);
        Assert.Null(now.FindByIp(stranger.Ip));
        Assert.Equal(Peers["node2"], now.PeerNodes["node2"]);
    }

    [Fact]
    public async Task ReadersDuringReloads_NeverSeeNewLabelsWithOldPolicies_OrTheReverse()
    {
        var registry = new WorkloadRegistry();
        registry.Reset(new RegistrySnapshot([Labelled(0)], Peers, Generation(0)));
        using var done = new CancellationTokenSource();
        int mismatches = 0, reads = 0;
        var reading = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task reader = Task.Run(() =>
        {
            reading.TrySetResult();
            while (!done.IsCancellationRequested)
            {
                RegistrySnapshot snapshot = registry.Current;
                string labels = snapshot.FindByIp(Db.Ip)!.Labels["gen"];
                if ("gen-" + labels != snapshot.Policies.Policies[0].Name)
                {
                    Interlocked.Increment(ref mismatches);
                }

                Interlocked.Increment(ref reads);
            }
        });

        await reading.Task.WaitAsync(TimeSpan.FromSeconds(10));
        for (int n = 1; n <= 3000 || Volatile.Read(ref reads) < 10_000; n++)
        {
            registry.Reconfigure([Labelled(n)], Generation(n));
        }

        await done.CancelAsync();
        await reader;
        Assert.True(reads > 0);
        Assert.Equal(0, mismatches);
    }
}
