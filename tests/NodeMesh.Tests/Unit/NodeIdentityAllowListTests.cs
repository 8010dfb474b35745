using NodeMesh.Config;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Unit;

public class NodeIdentityAllowListTests
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Db = SpiffeId.Parse("spiffe://cluster.local/ns/data/sa/db");

    [Fact]
    public void Entries_AreExactIdsOrPathPrefixes_AndAnUnlistedNodeIsNotLimited()
    {
        var lists = new Dictionary<string, IReadOnlyList<string>>
        {
            ["node2"] = ["spiffe://cluster.local/ns/shop/*"],
            ["node3"] = ["spiffe://cluster.local/ns/data/sa/db"],
            ["node4"] = [],
        };
        Assert.True(NodeIdentityAllowList.Allows(lists, "node2", Web));
        Assert.False(NodeIdentityAllowList.Allows(lists, "node2", Db));
        Assert.True(NodeIdentityAllowList.Allows(lists, "node3", Db));
        Assert.False(NodeIdentityAllowList.Allows(lists, "node3", Web));
        Assert.False(NodeIdentityAllowList.Allows(lists, "node4", Web));
        Assert.True(NodeIdentityAllowList.Allows(lists, "node9", Web));

        // A prefix stops at a path boundary: ns/shop/* is not ns/shopping.
        Assert.False(NodeIdentityAllowList.Matches("spiffe://cluster.local/ns/shop/*", SpiffeId.Parse("spiffe://cluster.local/ns/shopping/sa/web")));
        Assert.True(NodeIdentityAllowList.Matches("spiffe://cluster.local/ns/shop/sa/*", Web));
        Assert.True(NodeIdentityAllowList.Matches("spiffe://cluster.local/*", Db));
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/shop/sa/web", null)]
    [InlineData("spiffe://cluster.local/ns/shop/*", null)]
    [InlineData("spiffe://cluster.local/ns/shop/sa/*", null)]
    [InlineData("spiffe://cluster.local/*", null)]
    [InlineData("spiffe://other.td/ns/shop/*", "is not in trust domain cluster.local")]
    [InlineData("spiffe://cluster.local/ns/shop", "is not a SPIFFE id or a prefix of one ending in /*")]
    [InlineData("spiffe://cluster.local/ns/*/sa/web", "is not a SPIFFE id or a prefix of one ending in /*")]
    [InlineData("web", "is not a SPIFFE id or a prefix of one ending in /*")]
    [InlineData("", "an entry is empty")]
    public void Problem_NamesWhatIsWrongWithAnEntry(string entry, string? expected)
    {
        string? problem = NodeIdentityAllowList.Problem(entry, "cluster.local");
        if (expected is null)
        {
            Assert.Null(problem);
        }
        else
        {
            Assert.NotNull(problem);
            Assert.Contains(expected, problem, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Config_RefusesABadEntry_NamingTheNodeAndIndex()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""
            { "node": { "name": "node1", "address": "10.231.0.1" }, "ca": { "dir": "/var/lib/nodemesh/ca",
              "nodeIdentities": { "node2": ["spiffe://cluster.local/ns/shop/*", "shop"], "Bad Node": [] } } }
            """, "test.json"));
        Assert.Contains(ex.Errors, e => e.StartsWith("ca.nodeIdentities.node2[1]: 'shop' is not a SPIFFE id", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("ca.nodeIdentities.Bad Node:", StringComparison.Ordinal));
    }
}
