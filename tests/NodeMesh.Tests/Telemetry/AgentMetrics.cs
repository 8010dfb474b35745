using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Telemetry;

/// <summary>Scrapes a node agent's Prometheus port (15020) with curl from the external namespace, as a real scraper would.</summary>
internal static class AgentMetrics
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    public static async Task<IReadOnlyList<PrometheusSample>> ScrapeAsync(Topology mesh, int node, string path = "/metrics")
    {
        CommandResult curl = await mesh.Ext.RunAsync("curl", "-sS", "--fail", "--max-time", "5", $"http://{mesh.Node(node).Ip}:15020{path}");
        Assert.True(curl.ExitCode == 0, mesh.Explain($"scrape of node{node}{path}: {curl.Stderr}"));
        return PrometheusText.Parse(curl.Stdout);
    }

    /// <summary>Scrapes until <paramref name="done"/> holds; fails the test with the last scrape's <paramref name="prefix"/> series otherwise.</summary>
    public static async Task<IReadOnlyList<PrometheusSample>> WaitForAsync(Topology mesh, int node, string path, Func<IReadOnlyList<PrometheusSample>, bool> done,
        string prefix = "istio_")
    {
        IReadOnlyList<PrometheusSample> scrape = [];
        for (DateTime end = DateTime.UtcNow + Patience; DateTime.UtcNow < end; await Task.Delay(200))
        {
            scrape = await ScrapeAsync(mesh, node, path);
            if (done(scrape))
            {
                return scrape;
            }
        }

        Assert.Fail(mesh.Explain($"node{node}{path} never showed what the test waits for; last scrape:\n{Describe(scrape, prefix)}"));
        return scrape;
    }

    /// <summary>The sum of the samples of <paramref name="name"/> that carry all of <paramref name="labels"/>; null if none does.</summary>
    public static double? Value(IReadOnlyList<PrometheusSample> scrape, string name, IReadOnlyDictionary<string, string> labels)
    {
        List<PrometheusSample> matching = [.. scrape.Where(s => s.Name == name && s.Has(labels))];
        return matching.Count == 0 ? null : matching.Sum(s => s.Value);
    }

    public static string Describe(IReadOnlyList<PrometheusSample> scrape, string prefix = "istio_") =>
        string.Join('\n', scrape.Where(s => s.Name.StartsWith(prefix, StringComparison.Ordinal)));
}
