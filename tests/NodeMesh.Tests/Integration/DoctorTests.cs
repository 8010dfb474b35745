using System.Text.Json;
using NodeMesh.Config;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// <c>nodemesh doctor</c> on real namespaces, run in the node's namespace as the agent would be: a good setup has
/// no failure (its ports held by the running agent), a broken one fails each broken part with what to do.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class DoctorTests(ITestOutputHelper output)
{
    private static Task<CommandResult> DoctorAsync(Node node, string config, params string[] more) =>
        Command.RunAsync(TimeSpan.FromSeconds(60), "ip", ["netns", "exec", node.Namespace, TestPaths.NodeMesh, "doctor", "--config", config, .. more]);

    [Fact]
    public async Task GoodSetup_WithItsAgentRunning_HasNoFailure()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        IReadOnlyList<AgentProcess> agents = await mesh.StartAgentsAsync();
        Pod pod = mesh.Pod(1, 1);

        CommandResult result = await DoctorAsync(mesh.Node(1), agents[0].ConfigPath);
        output.WriteLine(result.ToString());
        Assert.True(result.ExitCode == 0, agents[0].Explain(result.ToString()));
        string[] lines = result.Stdout.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("ok    privileges", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    kernel", StringComparison.Ordinal) && l.Contains("TPROXY", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    namespace", StringComparison.Ordinal) && l.Contains($"holds {pod.Ip}", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    ports", StringComparison.Ordinal) && l.Contains($"held by the running nodemesh agent of node {mesh.Node(1).Name}", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    network", StringComparison.Ordinal) && l.Contains(mesh.Node(2).Name, StringComparison.Ordinal));

        CommandResult json = await DoctorAsync(mesh.Node(1), agents[0].ConfigPath, "-o", "json");
        Assert.True(json.ExitCode == 0, json.ToString());
        using JsonDocument report = JsonDocument.Parse(json.Stdout);
        Assert.True(report.RootElement.GetProperty("ok").GetBoolean());
        Assert.All(report.RootElement.GetProperty("findings").EnumerateArray(), f => Assert.Equal("ok", f.GetProperty("level").GetString()));
    }

    [Fact]
    public async Task BrokenSetup_FailsEachBrokenPart_WithWhatToDo()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 2, output);
        Pod good = mesh.Pod(1, 1), other = mesh.Pod(1, 2);
        // No agent anywhere; a workload whose namespace does not exist, one whose namespace lacks its IP, no CA.
        AgentProcess agent = mesh.CreateAgent(mesh.Node(1), s =>
        {
            s.LocalPods = [good];
            s.ExtraWorkloads.Add(new WorkloadConfig { Name = "gone", Ip = "10.240.1.50", Identity = "spiffe://cluster.local/ns/test/sa/gone", Netns = "/var/run/netns/nodemesh-none" });
            s.ExtraWorkloads.Add(new WorkloadConfig { Name = "wrong-ip", Ip = "10.240.1.51", Identity = "spiffe://cluster.local/ns/test/sa/wrong", Netns = other.NetnsPath });
            s.CaDir = Path.Combine(mesh.WorkDir, "no-ca");
        });

        CommandResult result = await DoctorAsync(mesh.Node(1), agent.ConfigPath);
        output.WriteLine(result.ToString());
        Assert.True(result.ExitCode == 1, result.ToString());
        string[] lines = result.Stdout.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("fail  namespace", StringComparison.Ordinal) && l.Contains("workload gone: /var/run/netns/nodemesh-none does not exist — ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("fail  namespace", StringComparison.Ordinal) && l.Contains("does not hold 10.240.1.51 — ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    namespace", StringComparison.Ordinal) && l.Contains($"holds {good.Ip}", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("fail  files", StringComparison.Ordinal) && l.Contains("ca.dir", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("warn  network", StringComparison.Ordinal) && l.Contains("connection refused", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("ok    ports", StringComparison.Ordinal) && l.Contains("is free", StringComparison.Ordinal));

        // Outside the node's namespace its address is not this machine's.
        CommandResult host = await Command.RunAsync(TimeSpan.FromSeconds(60), TestPaths.NodeMesh, "doctor", "--config", agent.ConfigPath);
        Assert.Contains(host.Stdout.Split('\n'), l => l.StartsWith("fail  ports", StringComparison.Ordinal) && l.Contains("not an address of this machine", StringComparison.Ordinal));

        // As another user: privileges fail, and what needs them is not guessed.
        CommandResult nobody = await Command.RunAsync(TimeSpan.FromSeconds(60), "ip", "netns", "exec", mesh.Node(1).Namespace,
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", TestPaths.NodeMesh, "doctor", "--config", agent.ConfigPath);
        Assert.True(nobody.ExitCode == 1 && nobody.Stdout.Contains("fail  privileges", StringComparison.Ordinal), nobody.ToString());
        Assert.Contains(nobody.Stdout.Split('\n'), l => l.StartsWith("warn  namespace", StringComparison.Ordinal) && l.Contains("were not looked at", StringComparison.Ordinal));
    }

    [Fact]
    public async Task InvalidConfig_Exits2_NamingTheField()
    {
        string path = Path.Combine(Path.GetTempPath(), $"nodemesh-doctor-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, """{ "node": { "name": "node1", "address": "nowhere" } }""");
        try
        {
            CommandResult result = await Command.RunAsync(TimeSpan.FromSeconds(20), TestPaths.NodeMesh, "doctor", "--config", path);
            Assert.True(result.ExitCode == 2 && result.Stderr.Contains("node.address", StringComparison.Ordinal), result.ToString());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
