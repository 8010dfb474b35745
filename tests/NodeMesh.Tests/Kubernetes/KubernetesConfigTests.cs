using NodeMesh.Config;

namespace NodeMesh.Tests.Kubernetes;

public sealed class KubernetesConfigTests
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
    public void Kubernetes_DefaultsToInCluster_ThisNodesName_AndExcludesKubeSystem()
    {
        AgentConfig config = Parse("\"discovery\": { \"source\": \"kubernetes\" }");
        KubernetesConfig k = config.Discovery.Kubernetes;
        Assert.Equal(DiscoverySource.Kubernetes, config.Discovery.Source);
        Assert.Equal("", k.Kubeconfig);
        Assert.Equal("", k.NodeName);
        Assert.Equal(["kube-system"], k.ExcludeNamespaces);
        Assert.Equal(TimeSpan.FromMinutes(5), k.WatchTimeout);
        Assert.Equal(TimeSpan.FromSeconds(10), k.RequestTimeout);
        Assert.Equal(500, k.PageSize);
    }

    [Fact]
    public void Kubernetes_IsReadWithItsKubeconfigNodeNameAndDurations()
    {
        KubernetesConfig k = Parse("""
            "discovery": { "source": "kubernetes", "kubernetes": { "kubeconfig": "/etc/nodemesh/kubeconfig", "nodeName": "worker-7",
              "excludeNamespaces": ["kube-system", "monitoring"], "requestTimeout": "3s", "watchTimeout": "90s", "pageSize": 100,
              "initialBackoff": "100ms", "maxBackoff": "10s" } }
            """).Discovery.Kubernetes;
        Assert.Equal("/etc/nodemesh/kubeconfig", k.Kubeconfig);
        Assert.Equal("worker-7", k.NodeName);
        Assert.Equal(["kube-system", "monitoring"], k.ExcludeNamespaces);
        Assert.Equal(TimeSpan.FromSeconds(90), k.WatchTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(100), k.InitialBackoff);
        Assert.Equal(TimeSpan.FromSeconds(10), k.MaxBackoff);
    }

    [Theory]
    [InlineData("\"kubeconfig\": \"kubeconfig\"", "discovery.kubernetes.kubeconfig: 'kubeconfig' must be an absolute path")]
    [InlineData("\"nodeName\": \"Worker_7\"", "discovery.kubernetes.nodeName: 'Worker_7' must be 1-253 characters")]
    [InlineData("\"excludeNamespaces\": [\"kube-system\", \"Bad.NS\"]", "discovery.kubernetes.excludeNamespaces[1]: 'Bad.NS' must be a namespace name")]
    [InlineData("\"excludeNamespaces\": null", "discovery.kubernetes.excludeNamespaces: must be a list, not null")]
    [InlineData("\"pageSize\": 0", "discovery.kubernetes.pageSize: 0 must be between 1 and 10000")]
    [InlineData("\"requestTimeout\": \"10ms\"", "discovery.kubernetes.requestTimeout: 10ms must be between 100ms and 5m")]
    [InlineData("\"watchTimeout\": \"2h\"", "discovery.kubernetes.watchTimeout: 2h must be between 1s and 1h")]
    [InlineData("\"initialBackoff\": \"2s\", \"maxBackoff\": \"1s\"", "discovery.kubernetes.maxBackoff: must not be shorter than discovery.kubernetes.initialBackoff")]
    [InlineData("\"watch\": true", "discovery.kubernetes.watch: unknown field 'watch'")]
    public void Kubernetes_BadSettings_AreNamedByTheirPath(string setting, string expected)
    {
        IReadOnlyList<string> errors = Errors($"\"discovery\": {{ \"source\": \"kubernetes\", \"kubernetes\": {{ {setting} }} }}");
        Assert.True(errors.Any(e => e.StartsWith(expected, StringComparison.Ordinal)), $"expected '{expected}' in: {string.Join(" | ", errors)}");
    }

    [Fact]
    public void Kubernetes_RefusesStaticPeersAndRemoteWorkloads()
    {
        IReadOnlyList<string> errors = Errors("""
            "discovery": { "source": "kubernetes" },
            "nodes": [ { "name": "node2", "address": "10.231.0.2" } ]
            """);
        Assert.Contains("nodes, remoteWorkloads: must be empty with discovery.source kubernetes (the API server places every pod)", errors);
    }

    [Fact]
    public void Kubernetes_SettingsAreNotCheckedForAnotherSource()
    {
        Assert.Equal(DiscoverySource.Static, Parse("\"discovery\": { \"kubernetes\": { \"pageSize\": 0 } }").Discovery.Source);
    }
}
