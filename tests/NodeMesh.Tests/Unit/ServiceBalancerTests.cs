using System.Net;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Proxy.Outbound;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

public class ServiceBalancerTests
{
    private static Workload Endpoint(string name, string ip, string node) => new(name, IPAddress.Parse(ip), SpiffeId.Parse($"spiffe://td/ns/a/sa/{name}"), node, null);

    private static readonly Workload A = Endpoint("a", "10.240.2.2", "node2");
    private static readonly Workload B = Endpoint("b", "10.240.3.2", "node3");
    private static readonly Workload C = Endpoint("c", "10.240.4.2", "node4");
    private static readonly MeshService Echo = new("echo", [IPAddress.Parse("10.96.0.10")], [new ServicePort(80, 8080)], ["a", "b", "c", "gone"]);

    [Fact]
    public void PowerOfTwoChoices_PrefersTheLessBusyOfTwo_AndSpreadsEvenly()
    {
        var random = new Random(1);
        var load = new Dictionary<string, int> { ["a"] = 5, ["b"] = 0 };
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(B, ServiceBalancer.Choose([A, B], w => load[w.Name], random));
        }

        var balancer = new ServiceBalancer();
        var picks = new Dictionary<string, int>();
        for (int i = 0; i < 3000; i++)
        {
            Workload chosen = balancer.Pick(Echo, [A, B, C], [], random)!;
            picks[chosen.Name] = picks.GetValueOrDefault(chosen.Name) + 1;
        }

        Assert.All(new[] { "a", "b", "c" }, n => Assert.InRange(picks[n], 800, 1200));
    }

    [Fact]
    public void AnEndpointMarkedDown_GetsNoFlowWhileOthersAreUp_AndTriedOnesAreSkipped()
    {
        var balancer = new ServiceBalancer();
        Assert.True(balancer.MarkDown(Echo, B));
        Assert.False(balancer.MarkDown(Echo, B));
        for (int i = 0; i < 100; i++)
        {
            Assert.NotEqual(B, balancer.Pick(Echo, [A, B, C], [], Random.Shared));
        }

        Assert.Equal(C, balancer.Pick(Echo, [A, B, C], ["a"], Random.Shared));
        // All that are left are down: tried anyway rather than refusing the flow.
        Assert.Equal(B, balancer.Pick(Echo, [A, B, C], ["a", "c"], Random.Shared));
        Assert.Null(balancer.Pick(Echo, [A, B, C], ["a", "b", "c"], Random.Shared));

        using (balancer.Begin(Echo, A))
        {
            Assert.Equal(C, ServiceBalancer.Choose([A, C], w => w == A ? 1 : 0, Random.Shared));
        }
    }

    [Fact]
    public void Plan_ForAServiceAddress_ListsTheRegisteredEndpoints_AndRefusesAnUnknownPortOrNoEndpoint()
    {
        var web = new Workload("web", IPAddress.Parse("10.240.1.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/web"), "node1", "/var/run/netns/web");
        var registry = new RegistrySnapshot([web, A, B], new Dictionary<string, IPEndPoint>(), services: [Echo, new MeshService("empty", [IPAddress.Parse("10.96.0.11")], [new ServicePort(80, 80)], ["gone"])]);

        var plan = Assert.IsType<OutboundPlan.ViaService>(OutboundPlan.Decide(registry, web, IPEndPoint.Parse("10.96.0.10:80"), "node1"));
        Assert.Equal(8080, plan.TargetPort);
        Assert.Equal([A, B], plan.Endpoints);
        Assert.Contains("has no port 81", Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(registry, web, IPEndPoint.Parse("10.96.0.10:81"), "node1")).Reason, StringComparison.Ordinal);
        Assert.Contains("no endpoint in the registry (gone)", Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(registry, web, IPEndPoint.Parse("10.96.0.11:80"), "node1")).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ConfigServices_AreValidated_NamingTheField()
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse("""
            { "node": { "name": "node1", "address": "10.231.0.1" }, "ca": { "dir": "/var/lib/nodemesh/ca" },
              "workloads": [ { "name": "web", "ip": "10.240.1.2", "identity": "spiffe://cluster.local/ns/a/sa/web", "netns": "/var/run/netns/web" } ],
              "services": [
                { "name": "echo", "addresses": ["10.96.0.10"], "ports": [ { "port": 80, "targetPort": 8080 } ], "endpoints": ["web"] },
                { "name": "echo", "addresses": ["10.96.0.10", "10.240.1.2", "10.96.0.300"], "ports": [ { "port": 0 } ], "endpoints": ["Bad Name"] },
                { "name": "none", "addresses": [], "ports": [] } ] }
            """, "test.json"));
        string[] expected =
        [
            "services[1].name: service 'echo' is listed twice",
            "services[1].addresses[0]: 10.96.0.10 is already services[0].addresses[0]",
            "services[1].addresses[1]: 10.240.1.2 is already",
            "services[1].addresses[2]:",
            "services[1].ports[0].port:",
            "services[1].endpoints[0]:",
            "services[2].addresses: at least one virtual IPv4 address is needed",
            "services[2].ports: at least one port is needed",
        ];
        Assert.All(expected, e => Assert.Contains(ex.Errors, error => error.StartsWith(e, StringComparison.Ordinal)));
    }
}
