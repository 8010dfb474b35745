using System.Net;
using NodeMesh.Api;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Interop;
using NodeMesh.Proxy.Inbound;
using NodeMesh.State;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Unit;

/// <summary>The pure decisions behind registration: which addresses and namespaces a workload may have, who owns rules, who may call the API.</summary>
public class WorkloadRegistrationRulesTests
{
    [Theory]
    [InlineData("0.0.0.0", "unspecified")]
    [InlineData("0.1.2.3", "unspecified")]
    [InlineData("127.0.0.1", "loopback")]
    [InlineData("127.255.0.9", "loopback")]
    [InlineData("169.254.10.1", "link-local")]
    [InlineData("224.0.0.1", "multicast")]
    [InlineData("239.255.255.250", "multicast")]
    [InlineData("255.255.255.255", "broadcast")]
    [InlineData("::", "unspecified")]
    [InlineData("::1", "loopback")]
    [InlineData("ff02::1", "multicast")]
    [InlineData("fe80::1", "link-local")]
    [InlineData("::ffff:127.0.0.1", "loopback")]
    public void WorkloadAddress_RefusesAddressesThatAreNotOneHostsUnicast(string ip, string why)
    {
        string? refusal = WorkloadAddress.Refusal(IPAddress.Parse(ip));
        Assert.NotNull(refusal);
        Assert.Contains(why, refusal, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("10.240.1.2")]
    [InlineData("192.168.0.255")]
    [InlineData("1.2.3.4")]
    [InlineData("223.255.255.254")]
    [InlineData("fd00:240::2")]
    [InlineData("2001:db8::1")]
    public void WorkloadAddress_AcceptsUnicastAddresses(string ip) => Assert.Null(WorkloadAddress.Refusal(IPAddress.Parse(ip)));

    [Fact]
    public void WorkloadErrors_NameTheIpField_ForALoopbackWorkload()
    {
        string error = Assert.Single(ConfigLoader.WorkloadErrors("web", "127.0.0.1", "spiffe://td/ns/a/sa/web", "/var/run/netns/web", "td"));
        Assert.StartsWith("ip: 127.0.0.1 is a loopback address", error, StringComparison.Ordinal);
    }

    private static readonly NamespaceId Agent = new(4, 4026531840);
    private static readonly NamespaceId Pod = new(4, 4026532999);
    private static readonly NamespaceId Other = new(4, 4026533111);

    [Fact]
    public void WorkloadNamespace_RefusesTheAgentsOwnNamespace()
    {
        string? refusal = WorkloadNamespace.Refusal("web", "/proc/1/ns/net", Agent, expected: null, agentOwn: Agent);
        Assert.Equal("workload 'web': /proc/1/ns/net is the agent's own network namespace (inode 4026531840 (device 4)); a workload needs a namespace of its own", refusal);
    }

    [Fact]
    public void WorkloadNamespace_RefusesASavedPathThatNowNamesAnotherNamespace_NamingBothInodes()
    {
        string? refusal = WorkloadNamespace.Refusal("web", "/proc/77/ns/net", Other, expected: Pod, agentOwn: Agent);
        Assert.NotNull(refusal);
        Assert.Contains("workload 'web'", refusal, StringComparison.Ordinal);
        Assert.Contains("/proc/77/ns/net", refusal, StringComparison.Ordinal);
        Assert.Contains("registered with inode 4026532999", refusal, StringComparison.Ordinal);
        Assert.Contains("found inode 4026533111", refusal, StringComparison.Ordinal);
    }

    [Fact]
    public void WorkloadNamespace_AcceptsTheRegisteredNamespace_AndANewRegistration()
    {
        Assert.Null(WorkloadNamespace.Refusal("web", "/var/run/netns/web", Pod, expected: Pod, agentOwn: Agent));
        Assert.Null(WorkloadNamespace.Refusal("web", "/var/run/netns/web", Pod, expected: null, agentOwn: Agent));
    }

    private static readonly RuleOwner Me = new("node1", "0123456789abcdef", 4242);

    [Fact]
    public void RuleOwner_IsWrittenIntoTheRules_AndReadBackFromIptablesSave()
    {
        string plan = CaptureRules.Install(new CapturePorts(15001, 15006), "", Me);
        Assert.Contains("-A NODEMESH-OUTPUT -m comment --comment nodemesh-owner=node1/0123456789abcdef/pid=4242", plan, StringComparison.Ordinal);
        Assert.Equal(Me, RuleOwner.Find(plan));

        // iptables-save quotes comments; either way the owner is found.
        string saved = "*nat\n:NODEMESH-OUTPUT - [0:0]\n-A NODEMESH-OUTPUT -m comment --comment \"nodemesh-owner=node-2.x/fedcba9876543210/pid=17\"\nCOMMIT\n";
        Assert.Equal(new RuleOwner("node-2.x", "fedcba9876543210", 17), RuleOwner.Find(saved));
        Assert.Null(RuleOwner.Find("*nat\n:NODEMESH-OUTPUT - [0:0]\nCOMMIT\n"));
    }

    [Fact]
    public void RuleOwner_Claim_TouchesOnlyOwnOrAbandonedRules()
    {
        Assert.Equal(RuleClaim.Unowned, Me.Claim(null, _ => true));
        Assert.Equal(RuleClaim.Ours, Me.Claim(Me with { Pid = 1000 }, _ => true));
        var other = new RuleOwner("node1", "aaaaaaaaaaaaaaaa", 5000);
        Assert.Equal(RuleClaim.OtherRunningAgent, Me.Claim(other, pid => pid == 5000));
        Assert.Equal(RuleClaim.LeftByStoppedAgent, Me.Claim(other, _ => false));
        // A dead owner's pid now reused by this very agent is not a running other agent.
        Assert.Equal(RuleClaim.LeftByStoppedAgent, Me.Claim(other with { Pid = Me.Pid }, _ => true));
    }

    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://td/ns/a/sa/web");
    private static readonly Workload Target = new("db", IPAddress.Parse("10.240.3.2"), SpiffeId.Parse("spiffe://td/ns/a/sa/db"), "node3", "/var/run/netns/db");
    private static readonly Workload WebOnNode1 = new("web-1", IPAddress.Parse("10.240.1.2"), Web, "node1", null);
    private static readonly Workload WebOnNode2 = new("web-2", IPAddress.Parse("10.240.2.2"), Web, "node2", null);

    [Fact]
    public void InboundCheck_RefusesASourceOfTheSameIdentityOnAnotherNode()
    {
        var header = new FlowHeader(new IPEndPoint(Target.Ip, 8080), new IPEndPoint(WebOnNode1.Ip, 40000), null);
        Assert.Null(InboundTunnelProxy.Check(header, Web, "node1", WebOnNode1, Target, new PortsConfig()));

        string? refusal = InboundTunnelProxy.Check(header, Web, "node2", WebOnNode1, Target, new PortsConfig());
        Assert.Equal("source 10.240.1.2 is a workload of node node1, but the tunnel comes from node node2", refusal);
        refusal = InboundTunnelProxy.Check(header, Web, sendingNode: null, WebOnNode1, Target, new PortsConfig());
        Assert.Contains("does not come from any known node", refusal, StringComparison.Ordinal);
        _ = WebOnNode2;
    }

    [Fact]
    public void InboundCheck_TakesARequestPrincipal_OnlyFromTheGateway()
    {
        SpiffeId gateway = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/gateway");
        IPAddress node1 = IPAddress.Parse("10.231.0.1");
        var caller = new GatewayCaller(gateway, node1);
        var fromGateway = new FlowHeader(new IPEndPoint(Target.Ip, 8080), new IPEndPoint(node1, 0), null, "consumer:shop-app");
        Assert.Null(InboundTunnelProxy.Check(fromGateway, gateway, "node1", null, Target, new PortsConfig(), caller));

        // A workload's agent (or anyone but the gateway) claiming a caller: refused, named.
        var forged = new FlowHeader(new IPEndPoint(Target.Ip, 8080), new IPEndPoint(WebOnNode1.Ip, 40000), null, "consumer:shop-app");
        string? refusal = InboundTunnelProxy.Check(forged, Web, "node1", WebOnNode1, Target, new PortsConfig(), caller);
        Assert.Equal($"the flow carries a request principal, which only the gateway's identity ({gateway}) may send; the caller is {Web}", refusal);
    }

    [Fact]
    public void InboundCheck_RefusesASourceOfThisNode_ClaimedByAPeer()
    {
        Workload localWeb = WebOnNode1 with { Node = "node3", Netns = "/var/run/netns/web" };
        var header = new FlowHeader(new IPEndPoint(Target.Ip, 8080), new IPEndPoint(localWeb.Ip, 40000), null);
        Assert.NotNull(InboundTunnelProxy.Check(header, Web, "node1", localWeb, Target, new PortsConfig()));
    }

    [Fact]
    public void SendingNode_IsThePeerNodeWithTheConnectionsAddress()
    {
        var snapshot = new RegistrySnapshot([], new Dictionary<string, IPEndPoint>
        {
            ["node1"] = IPEndPoint.Parse("10.231.0.1:15008"),
            ["node2"] = IPEndPoint.Parse("10.231.0.2:15008"),
        });
        Assert.Equal("node2", InboundTunnelProxy.SendingNode(snapshot, IPAddress.Parse("10.231.0.2")));
        Assert.Equal("node1", InboundTunnelProxy.SendingNode(snapshot, IPAddress.Parse("::ffff:10.231.0.1")));
        Assert.Null(InboundTunnelProxy.SendingNode(snapshot, IPAddress.Parse("10.231.0.200")));
        Assert.Null(InboundTunnelProxy.SendingNode(snapshot, null));
    }

    [Fact]
    public void ApiAccess_AllowsRootAndGroupMembers_Only()
    {
        string groups = Path.GetTempFileName();
        try
        {
            File.WriteAllText(groups, "root:x:0:\nmeshops:x:1234:alice\nusers:x:100:\n");
            ApiAccess access = ApiAccess.ForGroup("meshops", groups);
            Assert.Equal(1234u, access.Gid);
            Assert.Null(access.Refusal(new PeerCredentials(1, 0, 0, [])));
            Assert.Null(access.Refusal(new PeerCredentials(2, 1000, 1234, [])));
            Assert.Null(access.Refusal(new PeerCredentials(3, 1000, 1000, [100, 1234])));
            string? refusal = access.Refusal(new PeerCredentials(4, 65534, 65534, [100]));
            Assert.Equal("permission denied: the agent's local API is for root and members of group 'meshops' (gid 1234); the caller is uid 65534, gid 65534 (pid 4)", refusal);
            Assert.Contains("root only", ApiAccess.RootOnly.Refusal(new PeerCredentials(5, 1000, 0, [0])), StringComparison.Ordinal);
            Assert.Equal(77u, ApiAccess.ForGroup("77", groups).Gid);
            InvalidDataException missing = Assert.Throws<InvalidDataException>(() => ApiAccess.ForGroup("nosuch", groups));
            Assert.Contains("no group 'nosuch'", missing.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(groups);
        }
    }

    [Theory]
    [InlineData("", true)]
    [InlineData("meshops", true)]
    [InlineData("1234", true)]
    [InlineData("mesh ops", false)]
    [InlineData("-x", false)]
    [InlineData("a;b", false)]
    public void ApiGroup_IsValidated(string group, bool valid)
    {
        IReadOnlyList<string> errors = ConfigLoader.Validate(new AgentConfig { Node = new NodeConfig { Name = "n1", Address = "10.0.0.1" }, Api = new ApiConfig { Group = group } });
        Assert.Equal(valid, !errors.Any(e => e.StartsWith("api.group:", StringComparison.Ordinal)));
    }
}
