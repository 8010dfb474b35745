using System.Diagnostics;
using NodeMesh.Tests.Discovery;
using NodeMesh.Tests.Integration;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// Consumers in a fleet: kept in the registry's etcd, so a consumer made and a key issued on one node's agent is
/// accepted by another node's gateway, and a key revoked on the second is refused by the first. While etcd is
/// down the consumers last read stay in force, and a change is refused saying why.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayFleetConsumerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AConsumerMadeOnOneNode_IsKnownToEveryNodesGateway_AndARevocationReachesThemAll()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await using EtcdServer etcd = await EtcdServer.StartClusterAsync(1, mesh.Ext);
        Pod web = mesh.Pod(1, 1);
        await NginxServer.StartAsync(web, "web", 80);
        string Gateway(Node node) => $$"""
            {
              "listeners": [ { "name": "web", "address": "{{node.Ip}}", "port": 8080 } ],
              "plans": [ { "name": "gold", "dailyQuota": 1000 } ],
              "httpRoutes": [ { "name": "api", "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ], "consumers": { "forwardHeader": "x-env" } } ] } ]
            }
            """;
        Action<AgentSetup> Setup(Node node) => EtcdDiscoveryTests.OnEtcd(etcd, s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(Gateway(node));
        });
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), Setup(mesh.Node(1)));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), Setup(mesh.Node(2)));
        await EtcdDiscoveryTests.WaitForRegistryAsync(node2, r => r is { State: "synced", RemoteWorkloads: 1 }, TimeSpan.FromSeconds(10), "node1's pod");
        Task<HttpAnswer> Call(Node node, string key) => CurlAsync(mesh, "-H", "x-api-key: " + key, $"http://{node.Ip}:8080/");

        Assert.True((await node1.CliAsync("consumer", "create", "--name", "shop-app", "--plan", "gold")).Succeeded);
        CommandResult issued = await node1.CliAsync("consumer", "issue-key", "--name", "shop-app");
        string key = issued.Stdout.Trim();
        Assert.True(issued.Succeeded, issued.ToString());

        // Made on node1: node1 takes it at once (its own change), node2 as soon as its watch brings it.
        Assert.Equal(200, (await Call(mesh.Node(1), key)).Status);
        HttpAnswer onNode2 = await Eventually(() => Call(mesh.Node(2), key), a => a.Status == 200, TimeSpan.FromSeconds(5));
        Assert.True(onNode2 is { Status: 200, ServedBy: "web" } && onNode2.Field("env") == "shop-app", node2.Explain($"node2's gateway must accept the key made on node1\n{onNode2}"));
        CommandResult listed = await node2.CliAsync("consumer", "list");
        Assert.True(listed.Succeeded && listed.Stdout.Contains("shop-app", StringComparison.Ordinal), listed.ToString());

        // Revoked on node2: node1 refuses it within the watch's delay.
        Assert.True((await node2.CliAsync("consumer", "revoke-key", "--name", "shop-app", "--key", key[4..20])).Succeeded);
        Assert.Equal(401, (await Call(mesh.Node(2), key)).Status);
        HttpAnswer onNode1 = await Eventually(() => Call(mesh.Node(1), key), a => a.Status == 401, TimeSpan.FromSeconds(5));
        Assert.True(onNode1.Status == 401, node1.Explain($"node1 must refuse the key revoked on node2\n{onNode1}"));

        // Two nodes issue keys to one consumer at once: the transactions on the key's revision keep both.
        CommandResult[] both = await Task.WhenAll(node1.CliAsync("consumer", "issue-key", "--name", "shop-app"), node2.CliAsync("consumer", "issue-key", "--name", "shop-app"));
        Assert.True(both.All(r => r.Succeeded), string.Join("\n", both.Select(r => r.ToString())));
        foreach (CommandResult fresh in both)
        {
            HttpAnswer answer = await Eventually(() => Call(mesh.Node(1), fresh.Stdout.Trim()), a => a.Status == 200, TimeSpan.FromSeconds(5));
            Assert.True(answer.Status == 200, node1.Explain($"both keys issued at once must be kept\n{answer}"));
        }

        // etcd down: the consumers read last stay in force; a change is refused with why.
        etcd.Kill(0);
        Assert.Equal(200, (await Call(mesh.Node(2), both[0].Stdout.Trim())).Status);
        CommandResult refused = await node2.CliAsync("consumer", "create", "--name", "late");
        Assert.True(!refused.Succeeded && refused.Stderr.Contains("from etcd", StringComparison.Ordinal), refused.ToString());
    }

    private static async Task<HttpAnswer> Eventually(Func<Task<HttpAnswer>> call, Func<HttpAnswer, bool> done, TimeSpan timeout)
    {
        var watch = Stopwatch.StartNew();
        HttpAnswer answer = await call();
        while (!done(answer) && watch.Elapsed < timeout)
        {
            await Task.Delay(100);
            answer = await call();
        }

        return answer;
    }
}
