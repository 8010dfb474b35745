using System.Net;
using NodeMesh.Identity;
using NodeMesh.Proxy.Outbound;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

public class OutboundPlanTests
{
    private static readonly Workload Web = new("web", IPAddress.Parse("10.240.1.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/web"), "node1", "/var/run/netns/web");
    private static readonly Workload Api = new("api", IPAddress.Parse("10.240.1.3"), SpiffeId.Parse("spiffe://td/ns/a/sa/api"), "node1", "/var/run/netns/api");
    private static readonly Workload Db = new("db", IPAddress.Parse("10.240.2.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/db"), "node2", null);
    private static readonly Workload Lost = new("lost", IPAddress.Parse("10.240.3.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/lost"), "node3", null);

    private static readonly RegistrySnapshot Registry = new(
        [Web, Api, Db, Lost],
        new Dictionary<string, IPEndPoint> { ["node2"] = IPEndPoint.Parse("10.231.0.2:15008") });

    [Fact]
    public void RemoteMeshWorkload_GoesThroughTheTunnelToItsNode()
    {
        var plan = Assert.IsType<OutboundPlan.ViaTunnel>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.240.2.2:5432"), "node1"));
        Assert.Equal(Db, plan.Destination);
        Assert.Equal(IPEndPoint.Parse("10.231.0.2:15008"), plan.PeerAgent);
    }

    [Fact]
    public void SameNodeWorkload_TakesTheLocalPath()
    {
        var plan = Assert.IsType<OutboundPlan.Local>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.240.1.3:80"), "node1"));
        Assert.Equal(Api, plan.Destination);
    }

    [Fact]
    public void UnknownAddressInTheMeshRanges_IsHeldForTheRegistry_NotPassedThrough()
    {
        IPNetwork[] mesh = [IPNetwork.Parse("10.240.0.0/16")];
        var plan = Assert.IsType<OutboundPlan.Unknown>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.240.9.9:80"), "node1", AgentEndpoints.None, null, mesh));
        Assert.Equal(mesh[0], plan.Range);
        Assert.IsType<OutboundPlan.Unknown>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("[::ffff:10.240.9.9]:80"), "node1", AgentEndpoints.None, null, mesh));
        Assert.IsType<OutboundPlan.ViaTunnel>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.240.2.2:80"), "node1", AgentEndpoints.None, null, mesh));
        Assert.IsType<OutboundPlan.Passthrough>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.241.0.1:80"), "node1", AgentEndpoints.None, null, mesh));
    }

    [Fact]
    public void NonMeshAddress_IsPassedThrough() =>
        Assert.IsType<OutboundPlan.Passthrough>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("93.184.216.34:443"), "node1"));

    [Fact]
    public void MeshWorkloadOnUnknownNode_IsRefused_NeverPlaintext()
    {
        var plan = Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse("10.240.3.2:80"), "node1"));
        Assert.Contains("node3", plan.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void WorkloadOnThisNodeWithoutNamespace_IsRefused()
    {
        var ghost = new Workload("ghost", IPAddress.Parse("10.240.1.9"), SpiffeId.Parse("spiffe://td/ns/a/sa/g"), "node1", null);
        Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry.With(ghost), Web, IPEndPoint.Parse("10.240.1.9:80"), "node1"));
    }

    [Fact]
    public void RegistrySnapshot_WithAndWithout_ReplaceByNameAndIp()
    {
        var moved = Api with { Ip = IPAddress.Parse("10.240.1.10") };
        RegistrySnapshot next = Registry.With(moved);
        Assert.Null(next.FindByIp(IPAddress.Parse("10.240.1.3")));
        Assert.Equal(moved, next.FindByIp(IPAddress.Parse("10.240.1.10")));
        Assert.Null(next.Without("api").FindByIp(IPAddress.Parse("10.240.1.10")));
        Assert.Equal(Api, Registry.FindByIp(IPAddress.Parse("10.240.1.3")));
    }

    private static readonly AgentEndpoints Agent = new(new HashSet<int> { 15001, 15006, 15008, 15012 }, new HashSet<IPAddress> { IPAddress.Parse("10.231.0.1") });

    private static readonly IPEndPoint OutboundListener = IPEndPoint.Parse("127.0.0.1:15001");

    [Theory]
    [InlineData("127.0.0.1:15001")]
    [InlineData("127.0.0.1:8080")]
    [InlineData("127.1.2.3:80")]
    [InlineData("[::1]:15001")]
    [InlineData("[::ffff:127.0.0.1]:15001")]
    [InlineData("0.0.0.0:15001")]
    [InlineData("[::]:80")]
    public void LoopbackOrUnspecifiedDestination_IsRefused_NeverPassedThrough(string destination)
    {
        var plan = Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse(destination), "node1", Agent, OutboundListener));
        Assert.Contains("loopback", plan.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("10.240.1.2:15001")] // the source's own pod IP
    [InlineData("10.240.1.2:15006")]
    [InlineData("10.240.1.3:15008")] // another workload on this node
    [InlineData("10.240.2.2:15006")] // a workload on another node
    [InlineData("10.231.0.1:15008")] // this node's tunnel listener
    [InlineData("10.231.0.1:15012")] // this node's CA service
    [InlineData("10.231.0.2:15008")] // a peer agent
    public void AgentPortOfAMeshAddress_IsRefused(string destination)
    {
        var plan = Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse(destination), "node1", Agent, OutboundListener));
        Assert.Contains("agent port", plan.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TheAcceptedSocketsOwnEndpoint_IsRefused_OnAnyAddress()
    {
        IPEndPoint listener = IPEndPoint.Parse("10.240.1.2:4000");
        var plan = Assert.IsType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry, Web, listener, "node1", Agent, listener));
        Assert.Contains("own listener", plan.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("93.184.216.34:15001")] // a port number that is the agent's, on a host outside the mesh
    [InlineData("10.231.0.1:22")]       // this node, another port
    [InlineData("10.240.2.2:5432")]
    public void OrdinaryDestinations_AreStillPlanned(string destination) =>
        Assert.IsNotType<OutboundPlan.Refuse>(OutboundPlan.Decide(Registry, Web, IPEndPoint.Parse(destination), "node1", Agent, OutboundListener));

    [Fact]
    public void AgentEndpoints_FromConfig_HoldTheConfiguredPortsAndAddresses()
    {
        var config = new NodeMesh.Config.AgentConfig
        {
            Node = new NodeMesh.Config.NodeConfig { Name = "node1", Address = "10.231.0.1" },
            Ports = new NodeMesh.Config.PortsConfig { Outbound = 16001, InboundPlaintext = 16006, Tunnel = 16008 },
            Ca = new NodeMesh.Config.CaConfig { Role = "server", Listen = "10.231.0.9:16012" },
        };
        AgentEndpoints endpoints = AgentEndpoints.From(config);
        Assert.Equal([16001, 16006, 16008, 16012], endpoints.Ports.Order());
        Assert.Equal(["10.231.0.1", "10.231.0.9"], endpoints.Addresses.Select(a => a.ToString()).Order());
    }
}
