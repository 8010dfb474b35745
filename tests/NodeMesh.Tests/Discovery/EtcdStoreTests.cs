using System.Text;
using Grpc.Core;
using NodeMesh.Discovery;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Discovery;

/// <summary>
/// The registry's etcd operations against a real etcd-server on loopback. In the namespace tests' collection: a
/// real server under load (thousands of puts) must not run beside tests that time the agent's watchdog pings.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class EtcdStoreTests
{
    private const string Prefix = "/nodemesh/";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    private static ReadOnlyMemory<byte> Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private static string Text(ReadOnlyMemory<byte> bytes) => Encoding.UTF8.GetString(bytes.Span);

    [Fact]
    public async Task ListThenWatch_SeesEveryChangeAfterTheListingsRevision_InOrder_AndNothingOutsideThePrefix()
    {
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using var store = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints });
        using var timeout = new CancellationTokenSource(Patience);
        await store.PutAsync("/nodemesh/nodes/node1/node", Bytes("a"), lease: 0, timeout.Token);
        await store.PutAsync("/nodemesh/nodes/node2/node", Bytes("b"), lease: 0, timeout.Token);
        await store.PutAsync("/nodemesh0", Bytes("just after the prefix"), lease: 0, timeout.Token);

        StoreListing listing = await store.ListAsync(Prefix, timeout.Token);
        Assert.Equal(["/nodemesh/nodes/node1/node", "/nodemesh/nodes/node2/node"], listing.Entries.Select(e => e.Key));
        Assert.True(listing.Revision >= 4, $"revision {listing.Revision}");

        var seen = new List<StoreEvent>();
        Task watching = Task.Run(async () =>
        {
            await foreach (StoreChanges changes in store.WatchAsync(Prefix, listing.Revision + 1, timeout.Token))
            {
                lock (seen)
                {
                    seen.AddRange(changes.Events);
                }

                if (changes.Events.Any(e => e.Kind == StoreEventKind.Delete))
                {
                    return;
                }
            }
        });
        await store.PutAsync("/nodemesh/nodes/node3/node", Bytes("c"), lease: 0, timeout.Token);
        await store.PutAsync("/other/x", Bytes("not ours"), lease: 0, timeout.Token);
        await store.DeleteAsync("/nodemesh/nodes/node1/node", timeout.Token);
        await watching;

        Assert.Equal(["Put /nodemesh/nodes/node3/node c", "Delete /nodemesh/nodes/node1/node "],
            seen.Select(e => $"{e.Kind} {e.Key} {Text(e.Value)}"));
        Assert.True(seen[1].Revision > seen[0].Revision);
    }

    [Fact]
    public async Task List_OfMoreEntriesThanOnePage_ReturnsThemAll_AtOneRevision()
    {
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using var store = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints });
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await Parallel.ForEachAsync(Enumerable.Range(0, 2500), new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = timeout.Token },
            async (i, ct) => await store.PutAsync($"/nodemesh/nodes/n{i:0000}/node", Bytes($"{i}"), lease: 0, ct));

        StoreListing listing = await store.ListAsync(Prefix, timeout.Token);

        Assert.Equal(2500, listing.Entries.Count);
        Assert.Equal(2500, listing.Entries.Select(e => e.Key).Distinct().Count());
        Assert.Equal("2499", Text(listing.Entries[^1].Value));
    }

    [Fact]
    public async Task EntriesUnderALease_GoWhenItIsNoLongerKeptAlive_AndStayWhileItIs()
    {
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using var store = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        long kept = await store.GrantLeaseAsync(TimeSpan.FromSeconds(2), timeout.Token);
        long dropped = await store.GrantLeaseAsync(TimeSpan.FromSeconds(2), timeout.Token);
        await store.PutAsync("/nodemesh/nodes/kept/node", Bytes("k"), kept, timeout.Token);
        await store.PutAsync("/nodemesh/nodes/dropped/node", Bytes("d"), dropped, timeout.Token);

        using var keepAlive = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token);
        Task alive = store.KeepAliveAsync(kept, TimeSpan.FromMilliseconds(500), keepAlive.Token);
        await Task.Delay(TimeSpan.FromSeconds(4));

        StoreListing listing = await store.ListAsync(Prefix, timeout.Token);
        Assert.Equal(["/nodemesh/nodes/kept/node"], listing.Entries.Select(e => e.Key));
        await keepAlive.CancelAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => alive);

        // etcd says so when a lease is kept alive after it expired: the keep-alive returns (to grant a new one).
        await store.KeepAliveAsync(dropped, TimeSpan.FromMilliseconds(100), timeout.Token);
    }

    [Fact]
    public async Task Watch_FromACompactedRevision_SaysSo_SoTheWatcherListsAgain()
    {
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using var store = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints });
        using var timeout = new CancellationTokenSource(Patience);
        for (int i = 0; i < 5; i++)
        {
            await store.PutAsync("/nodemesh/nodes/node1/node", Bytes($"{i}"), lease: 0, timeout.Token);
        }

        StoreListing listing = await store.ListAsync(Prefix, timeout.Token);
        (int rc, string output) = await etcd.CtlAsync("compact", listing.Revision.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(rc == 0, output);

        StoreCompactedException compacted = await Assert.ThrowsAsync<StoreCompactedException>(async () =>
        {
            await foreach (StoreChanges _ in store.WatchAsync(Prefix, 2, timeout.Token))
            {
            }
        });
        Assert.Equal(listing.Revision, compacted.CompactRevision);
    }

    [Fact]
    public async Task WithEtcdAuthentication_ANodeUserWritesOnlyItsOwnPrefix_AndReadsTheWholeRegistry()
    {
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        foreach (string[] command in new[]
        {
            new[] { "user", "add", "root:rootpw" }, ["role", "add", "root"], ["user", "grant-role", "root", "root"],
            ["user", "add", "node1:node1pw"], ["role", "add", "node1"],
            ["role", "grant-permission", "node1", "--prefix=true", "readwrite", "/nodemesh/nodes/node1/"],
            ["role", "grant-permission", "node1", "--prefix=true", "read", Prefix],
            ["user", "grant-role", "node1", "node1"], ["auth", "enable"],
        })
        {
            (int rc, string output) = await etcd.CtlAsync(command);
            Assert.True(rc == 0, $"etcdctl {string.Join(' ', command)}: {output}");
        }

        await using var anonymous = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints });
        await using var node1 = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints, Username = "node1", Password = "node1pw" });
        await using var wrong = new EtcdStore(new EtcdOptions { Endpoints = etcd.Endpoints, Username = "node1", Password = "guess" });
        using var timeout = new CancellationTokenSource(Patience);

        await node1.PutAsync("/nodemesh/nodes/node1/node", Bytes("mine"), lease: 0, timeout.Token);
        RpcException other = await Assert.ThrowsAsync<RpcException>(() => node1.PutAsync("/nodemesh/nodes/node2/workloads/db", Bytes("theirs"), lease: 0, timeout.Token));
        Assert.Contains("permission denied", other.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(["/nodemesh/nodes/node1/node"], (await node1.ListAsync(Prefix, timeout.Token)).Entries.Select(e => e.Key));
        await Assert.ThrowsAsync<RpcException>(() => anonymous.ListAsync(Prefix, timeout.Token));
        RpcException refused = await Assert.ThrowsAsync<RpcException>(() => wrong.ListAsync(Prefix, timeout.Token));
        Assert.Contains("authentication failed", refused.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void RangeEnd_IsThePrefixWithItsLastByteIncremented() =>
        Assert.Equal("/nodemesh0", EtcdStore.RangeEnd(Prefix).ToStringUtf8());
}
