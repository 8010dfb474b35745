using System.Net;
using NodeMesh.Config;

namespace NodeMesh.Tests.Unit;

public class DiscoveryConfigTests
{
    private const string Base = """
        {
          "node": { "name": "node1", "address": "10.231.0.1" },
          "ca": { "dir": "/var/lib/nodemesh/ca" },
          REST
        }
        """;

    private static AgentConfig Parse(string rest) => ConfigLoader.Parse(Base.Replace("REST", rest, StringComparison.Ordinal), "test.json");

    private static IReadOnlyList<string> Errors(string rest) => Assert.Throws<ConfigException>(() => Parse(rest)).Errors;

    [Fact]
    public void Defaults_AreStatic_WithNoMeshRanges()
    {
        AgentConfig config = Parse("\"trustDomain\": \"cluster.local\"");
        Assert.Equal(DiscoverySource.Static, config.Discovery.Source);
        Assert.Empty(config.Mesh.Cidrs);
        Assert.Equal(TimeSpan.FromSeconds(1), config.Mesh.HoldTimeout);
        Assert.Equal("/nodemesh/", config.Discovery.Etcd.Prefix);
        Assert.Equal(TimeSpan.FromSeconds(10), config.Discovery.Etcd.LeaseTtl);
    }

    [Fact]
    public void Etcd_IsReadWithItsEndpointsRangesAndDurations()
    {
        AgentConfig config = Parse("""
            "discovery": { "source": "etcd", "etcd": { "endpoints": ["https://10.0.0.1:2379", "https://10.0.0.2:2379"], "leaseTtl": "5s",
              "username": "node1", "passwordFile": "/etc/nodemesh/etcd-password", "caFile": "/etc/nodemesh/etcd-ca.pem" } },
            "mesh": { "cidrs": ["10.240.0.0/16", "10.96.0.0/12"], "holdTimeout": "500ms" }
            """);
        Assert.Equal(DiscoverySource.Etcd, config.Discovery.Source);
        Assert.Equal([new Uri("https://10.0.0.1:2379"), new Uri("https://10.0.0.2:2379")], config.Discovery.Etcd.Endpoints);
        Assert.Equal(TimeSpan.FromSeconds(5), config.Discovery.Etcd.LeaseTtl);
        Assert.Equal([IPNetwork.Parse("10.240.0.0/16"), IPNetwork.Parse("10.96.0.0/12")], config.Mesh.Cidrs);
        Assert.Equal(TimeSpan.FromMilliseconds(500), config.Mesh.HoldTimeout);
    }

    [Theory]
    [InlineData("\"discovery\": { \"source\": \"consul\" }", "discovery.source: 'consul' is not one of Static, Etcd")]
    [InlineData("\"discovery\": { \"source\": \"etcd\" }", "discovery.etcd.endpoints: at least one etcd client URL is needed")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"ftp://10.0.0.1:2379\"] } }", "discovery.etcd.endpoints[0]: 'ftp://10.0.0.1:2379' must be an http:// or https:// URL")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\", \"https://10.0.0.2:2379\"] } }", "discovery.etcd.endpoints: all must be http:// or all https://")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\"], \"prefix\": \"nodemesh\" } }", "discovery.etcd.prefix: 'nodemesh' must start and end with '/'")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\"], \"username\": \"n1\" } }", "discovery.etcd.passwordFile: needed with discovery.etcd.username")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\"], \"certFile\": \"/a.pem\" } }", "discovery.etcd.certFile, keyFile: give both or neither")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\"], \"leaseTtl\": \"1s\" } }", "discovery.etcd.leaseTtl: 1s must be between 2s and 1h")]
    [InlineData("\"discovery\": { \"source\": \"etcd\", \"etcd\": { \"endpoints\": [\"http://10.0.0.1:2379\"] } }, \"nodes\": [ { \"name\": \"node2\", \"address\": \"10.231.0.2\" } ]", "nodes, remoteWorkloads: must be empty with discovery.source etcd")]
    [InlineData("\"mesh\": { \"cidrs\": [\"10.240.0.1/16\"] }", "mesh.cidrs[0]: '10.240.0.1/16' is not a CIDR")]
    [InlineData("\"mesh\": { \"cidrs\": [\"10.240.0.0/33\"] }", "mesh.cidrs[0]: '10.240.0.0/33' is not a CIDR")]
    [InlineData("\"mesh\": { \"cidrs\": [\"fd00::/8\"] }", "mesh.cidrs[0]: fd00::/8 is not IPv4")]
    [InlineData("\"mesh\": { \"cidrs\": [42] }", "mesh.cidrs[0]: a number is not a CIDR")]
    [InlineData("\"mesh\": { \"holdTimeout\": \"1m\" }", "mesh.holdTimeout: 1m must be between 0s and 30s")]
    public void BadDiscoveryOrMesh_IsRefused_NamingTheField(string rest, string expected)
    {
        IReadOnlyList<string> errors = Errors(rest);
        Assert.True(errors.Any(e => e.StartsWith(expected, StringComparison.Ordinal)), $"expected '{expected}...', got: {string.Join(" | ", errors)}");
    }
}
