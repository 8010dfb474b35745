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
}
