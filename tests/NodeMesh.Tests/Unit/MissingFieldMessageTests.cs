using NodeMesh.App;
using NodeMesh.Cli;
using NodeMesh.Config;

namespace NodeMesh.Tests.Unit;

/// <summary>A field or option that was not given is called missing, not reported as a malformed value.</summary>
public class MissingFieldMessageTests
{
    [Fact]
    public void MissingConfigFields_AreSaidToBeMissing()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""
            { "node": { "name": "node1" },
              "workloads": [ { "ip": "10.240.1.2", "identity": "spiffe://cluster.local/ns/x/sa/a" } ],
              "nodes": [ { "address": "10.0.0.2" } ],
              "remoteWorkloads": [ { "name": "b", "identity": "spiffe://cluster.local/ns/x/sa/b" } ] }
            """, "f"));
        Assert.Contains("node.address: missing (it must be an IPv4 address)", ex.Errors);
        Assert.Contains("workloads[0].name: missing (it must be 1-253 characters of a-z, 0-9, '-', '.', starting with a letter or digit)", ex.Errors);
        Assert.Contains(ex.Errors, e => e.StartsWith("workloads[0].netns: missing (it must be an absolute path", StringComparison.Ordinal));
        Assert.Contains(ex.Errors, e => e.StartsWith("nodes[0].name: missing (", StringComparison.Ordinal));
        Assert.Contains("remoteWorkloads[0].ip: missing (it must be an IPv4 address)", ex.Errors);
        Assert.DoesNotContain(ex.Errors, e => e.Contains("''", StringComparison.Ordinal));
        ConfigException remote = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""
            { "node": { "name": "node1", "address": "10.0.0.1" },
              "remoteWorkloads": [ { "name": "b", "ip": "10.240.2.2", "identity": "spiffe://cluster.local/ns/x/sa/b" } ] }
            """, "f"));
        Assert.Equal(["remoteWorkloads[0].node: missing (it must be one of the nodes listed in 'nodes')"], remote.Errors);
    }

    [Fact]
    public void GivenButMalformed_StillQuotesTheValue()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""{ "node": { "name": "Bad_Name", "address": "10.0.0.1" } }""", "f"));
        Assert.Contains("node.name: 'Bad_Name' must be 1-253 characters", ex.Errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void EveryMissingRequiredOption_IsNamedAtOnce()
    {
        CommandSpec add = CommandTable.All.Single(c => c.Path == "workload add");
        Assert.Equal("--ip, --identity and --netns are required", Assert.Throws<UsageException>(() => Options.Parse(["--name", "a"], add)).Message);
        Assert.Equal("--netns is required", Assert.Throws<UsageException>(() => Options.Parse(["--name", "a", "--ip", "1.2.3.4", "--identity", "x"], add)).Message);
        Assert.True(Options.Parse(["--help"], add).HelpRequested);
    }
}
