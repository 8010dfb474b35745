using System.Net;
using System.Text;
using NodeMesh.Discovery;
using NodeMesh.State;

namespace NodeMesh.Tests.Discovery;

public class RegistryStateTests
{
    private const string Prefix = "/nodemesh/";
    private static readonly RegistryState Empty = RegistryState.Empty(Prefix, "cluster.local");

    private static ReadOnlyMemory<byte> Json(string json) => Encoding.UTF8.GetBytes(json);

    private static KeyValuePair<string, ReadOnlyMemory<byte>> Entry(string key, string json) => new(key, Json(json));

    private const string Node3 = """{"name":"node3","address":"10.231.0.3:15008","transports":["tls"]}""";
    private const string Db = """{"name":"db","node":"node3","ips":["10.240.3.2"],"identity":"spiffe://cluster.local/ns/shop/sa/db","mode":"STRICT","labels":{"app":"db"}}""";

    [Fact]
    public void Listing_ReadsNodesWorkloadsAndServices_WithTypedValues()
    {
        var refused = new List<string>();
        RegistryState state = Empty.Listed(
        [
            Entry("/nodemesh/nodes/node3/node", Node3),
            Entry("/nodemesh/nodes/node3/workloads/db", Db),
            Entry("/nodemesh/services/db", """{"name":"db","addresses":["10.96.0.10"],"ports":[{"port":5432},{"port":80,"targetPort":8080}],"endpoints":["db"]}"""),
        ], revision: 42, refused);

        Assert.Empty(refused);
        Assert.Equal(42, state.Revision);
        MeshNode node = Assert.Single(state.Nodes);
        Assert.Equal(IPEndPoint.Parse("10.231.0.3:15008"), node.Tunnel);
        Workload db = Assert.Single(state.Workloads);
        Assert.Equal((IPAddress.Parse("10.240.3.2"), "node3", PeerMode.Strict, "spiffe://cluster.local/ns/shop/sa/db"), (db.Ip, db.Node, db.Mode, db.Identity.Uri));
        Assert.False(db.IsLocal);
        Assert.Equal("db", db.Labels["app"]);
        MeshService service = Assert.Single(state.Services);
        Assert.Equal([new ServicePort(5432, 5432), new ServicePort(80, 8080)], service.Ports);
    }

    [Theory]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db","node":"node1","ips":["10.240.3.2"],"identity":"spiffe://cluster.local/ns/shop/sa/db"}""", "is not the key's db on node3")]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db","node":"node3","ips":["fd00::2"],"identity":"spiffe://cluster.local/ns/shop/sa/db"}""", "ips: no IPv4 address")]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db","node":"node3","ips":["10.240.3.2"],"identity":"spiffe://evil.example/ns/shop/sa/db"}""", "not in trust domain cluster.local")]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db","node":"node3","ips":["10.240.3.2"],"identity":"spiffe://cluster.local/ns/shop/sa/db","mode":"OPEN"}""", "mode: 'OPEN' must be STRICT or PERMISSIVE")]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db","node":"node3","ips":["10.240.3.2"],"identity":"spiffe://cluster.local/ns/shop/sa/db","extra":1}""", "invalid JSON")]
    [InlineData("/nodemesh/nodes/node3/workloads/db", """{"name":"db",""", "invalid JSON")]
    [InlineData("/nodemesh/nodes/node3/node", """{"name":"node3","address":"node3:15008"}""", "is not an IPv4 address:port")]
    [InlineData("/nodemesh/nodes/node3/node", "null", "null instead of a node")]
    [InlineData("/nodemesh/services/db", """{"name":"db","addresses":["10.96.0.10"],"ports":[{"port":70000}],"endpoints":["db"]}""", "ports: each needs a port of 1-65535")]
    [InlineData("/nodemesh/services/db", """{"name":"db","addresses":["10.96.0.10"],"ports":[{"port":80}],"endpoints":["db; rm -rf /"]}""", "endpoints: 'db; rm -rf /' is not a workload name")]
    [InlineData("/nodemesh/nodes/Node3/node", Node3, "is not nodes/NODE/node")]
    [InlineData("/nodemesh/nodes/node3/secrets/x", Node3, "is not nodes/NODE/node")]
    [InlineData("/other/nodes/node3/node", Node3, "is not under /nodemesh/")]
    public void MalformedEntry_IsRefusedWithWhatIsWrongAndWhere_AndKeepsTheKeysPreviousEntry(string key, string json, string expected)
    {
        RegistryState before = Empty.Listed([Entry("/nodemesh/nodes/node3/workloads/db", Db), Entry("/nodemesh/nodes/node3/node", Node3)], 5, []);

        RegistryState after = before.Put(key, Json(json).Span, revision: 6, out string? error);

        Assert.NotNull(error);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.Contains(key, error, StringComparison.Ordinal);
        Assert.Equal(before.Workloads, after.Workloads);
        Assert.Equal(before.Nodes, after.Nodes);
        Assert.Equal(6, after.Revision);
    }

    [Fact]
    public void PutsAndDeletes_FoldInOrder_AndANodesEntriesGoTogether()
    {
        RegistryState state = Empty.Listed([Entry("/nodemesh/nodes/node3/node", Node3)], 10, []);
        state = state.Put("/nodemesh/nodes/node3/workloads/db", Json(Db).Span, 11, out string? error);
        Assert.Null(error);
        state = state.Put("/nodemesh/nodes/node30/workloads/web", Json("""{"name":"web","node":"node30","ips":["10.240.30.2"],"identity":"spiffe://cluster.local/ns/shop/sa/web"}""").Span, 12, out error);
        Assert.Null(error);
        Assert.Equal(2, state.Workloads.Count());

        // node3's lease expired: its node and workloads go, node30's (a longer name with the same start) stay.
        RegistryState gone = state.WithoutNode("node3", 13);
        Assert.Empty(gone.Nodes);
        Assert.Equal("web", Assert.Single(gone.Workloads).Name);
        Assert.Equal(13, gone.Revision);

        RegistryState deleted = state.Delete("/nodemesh/nodes/node3/workloads/db", 14);
        Assert.Equal("web", Assert.Single(deleted.Workloads).Name);
        Assert.Single(deleted.Nodes);

        // An older revision never moves the state back.
        Assert.Equal(14, deleted.Delete("/nodemesh/services/none", 3).Revision);
    }

    [Fact]
    public void TheGatewaysConsumers_BesideTheRegistry_AreNeitherReadNorRefused()
    {
        var refused = new List<string>();
        RegistryState state = Empty.Listed([Entry("/nodemesh/nodes/node3/node", Node3), Entry("/nodemesh/consumers/shop-app", """{"name":"shop-app"}""")], 10, refused);
        Assert.Empty(refused);
        Assert.Equal(1, state.Count);

        state = state.Put("/nodemesh/consumers/other", Json("""{"name":"other"}""").Span, 11, out string? error);
        Assert.Null(error);
        Assert.Equal((1, 11L), (state.Count, state.Revision));

        // Anything else unknown under the prefix is still refused.
        state.Put("/nodemesh/consumer/x", Json("{}").Span, 12, out error);
        Assert.NotNull(error);
    }

    [Fact]
    public void Keys_AreBuiltAndReadTheSameWay()
    {
        Assert.True(RegistryKey.TryParse(Prefix, RegistryKey.ForWorkload(Prefix, "node3", "db"), out RegistryKey workload, out _));
        Assert.Equal(new RegistryKey(RegistryKeyKind.Workload, "node3", "db"), workload);
        Assert.True(RegistryKey.TryParse(Prefix, RegistryKey.ForNode(Prefix, "node3"), out RegistryKey node, out _));
        Assert.Equal(new RegistryKey(RegistryKeyKind.Node, "node3", "node3"), node);
        Assert.True(RegistryKey.TryParse(Prefix, RegistryKey.ForService(Prefix, "db"), out RegistryKey service, out _));
        Assert.Equal(new RegistryKey(RegistryKeyKind.Service, null, "db"), service);
        Assert.StartsWith(RegistryKey.NodePrefix(Prefix, "node3"), RegistryKey.ForWorkload(Prefix, "node3", "db"), StringComparison.Ordinal);
    }
}
