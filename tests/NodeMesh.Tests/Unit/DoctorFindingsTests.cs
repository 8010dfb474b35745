using NodeMesh.Cli;

namespace NodeMesh.Tests.Unit;

/// <summary>What <c>nodemesh doctor</c> decides from what it found: each finding's level and what it tells to do.</summary>
public class DoctorFindingsTests
{
    private static readonly DoctorFacts Healthy = new()
    {
        Root = true,
        NetAdmin = true,
        SysAdmin = true,
        Kernel = [("REDIRECT", null), ("TPROXY", null)],
        Namespaces = [new NamespaceFact("api", "10.240.1.2", "/var/run/netns/api", Exists: true, HoldsIp: true)],
        Files = [new FileFact("ca.dir", "/var/lib/nodemesh/ca", null)],
        Ports = [new PortFact("ports.tunnel", "10.0.0.1:15008", PortState.Free)],
        ApiSocket = "/run/nodemesh/agent.sock",
        Reach = [new ReachFact("peer node2's tunnel port", "10.0.0.2:15008", null, Required: false)],
    };

    private static Finding Only(DoctorFacts facts, string check) => Assert.Single(DoctorFindings.Decide(facts), f => f.Check == check);

    [Fact]
    public void AHealthyMachine_HasOnlyOks()
    {
        List<Finding> findings = DoctorFindings.Decide(Healthy);
        Assert.All(findings, f => Assert.Equal(FindingLevel.Ok, f.Level));
        Assert.Contains("no problems found", DoctorFindings.Render(findings), StringComparison.Ordinal);
    }

    [Fact]
    public void Privileges_CapabilitiesAreEnough_OneMissingFailsAndSaysWhich()
    {
        Assert.Equal(FindingLevel.Ok, Only(Healthy with { Root = false }, "privileges").Level);
        Finding noSysAdmin = Only(Healthy with { Root = false, SysAdmin = false }, "privileges");
        Assert.Equal(FindingLevel.Fail, noSysAdmin.Level);
        Assert.Contains("without CAP_SYS_ADMIN", noSysAdmin.What, StringComparison.Ordinal);
        Assert.DoesNotContain("CAP_NET_ADMIN", noSysAdmin.What, StringComparison.Ordinal);
        Assert.Contains("without CAP_NET_ADMIN and CAP_SYS_ADMIN", Only(Healthy with { Root = false, NetAdmin = false, SysAdmin = false }, "privileges").What, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingToolsAndKernelFeatures_FailWithTheirFix()
    {
        Finding tools = Only(Healthy with { MissingTools = ["ip6tables-restore"] }, "tools");
        Assert.Equal(FindingLevel.Fail, tools.Level);
        Assert.Contains("apt-get install iptables", tools.Fix, StringComparison.Ordinal);
        Finding tproxy = Assert.Single(DoctorFindings.Decide(Healthy with { Kernel = [("TPROXY", "iptables exited 1: No chain/target/match by that name")] }), f => f.Check == "kernel");
        Assert.Equal(FindingLevel.Fail, tproxy.Level);
        Assert.Contains("modprobe xt_TPROXY", tproxy.Fix, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false, null, "Fail", "does not exist")]
    [InlineData(true, false, "Fail", "does not hold 10.240.1.2")]
    [InlineData(true, null, "Warn", "were not looked at")]
    [InlineData(true, true, "Ok", "holds 10.240.1.2")]
    public void Namespaces(bool exists, bool? holdsIp, string level, string what)
    {
        Finding finding = Only(Healthy with { Namespaces = [new NamespaceFact("api", "10.240.1.2", "/var/run/netns/api", exists, holdsIp)] }, "namespace");
        Assert.Equal(Enum.Parse<FindingLevel>(level), finding.Level);
        Assert.Contains(what, finding.What, StringComparison.Ordinal);
        Assert.Contains("workload api", finding.What, StringComparison.Ordinal);
    }

    [Fact]
    public void Files_UnreadableFails_ATokenNotNeededYetOnlyWarns()
    {
        Assert.Equal(FindingLevel.Fail, Only(Healthy with { Files = [new FileFact("ca.dir", "/x", "Permission denied")] }, "files").Level);
        Finding token = Only(Healthy with { Files = [new FileFact("ca.joinTokenFile", "/x", "not found", NeededNow: false)] }, "files");
        Assert.Equal(FindingLevel.Warn, token.Level);
        Assert.Contains("first join", token.Fix, StringComparison.Ordinal);
    }

    [Fact]
    public void Ports_InUseByTheRunningAgentIsOk_ByAnotherProgramFails_NotLocalFails()
    {
        DoctorFacts inUse = Healthy with { Ports = [new PortFact("ports.tunnel", "10.0.0.1:15008", PortState.InUse)] };
        Finding other = Only(inUse, "ports");
        Assert.Equal(FindingLevel.Fail, other.Level);
        Assert.Contains("ss -ltnp sport = :15008", other.Fix, StringComparison.Ordinal);
        Finding agent = Only(inUse with { RunningAgent = "node1" }, "ports");
        Assert.Equal(FindingLevel.Ok, agent.Level);
        Assert.Contains("held by the running nodemesh agent of node node1", agent.What, StringComparison.Ordinal);
        Finding notLocal = Only(Healthy with { Ports = [new PortFact("ports.tunnel", "10.9.9.9:15008", PortState.NotLocal)] }, "ports");
        Assert.Equal(FindingLevel.Fail, notLocal.Level);
        Assert.Contains("node.address", notLocal.Fix, StringComparison.Ordinal);
    }

    [Fact]
    public void Reach_AnUnreachablePeerWarns_AnUnreachableCaFails()
    {
        Assert.Equal(FindingLevel.Warn, Only(Healthy with { Reach = [new ReachFact("peer node2", "10.0.0.2:15008", "connection refused", Required: false)] }, "network").Level);
        Assert.Equal(FindingLevel.Fail, Only(Healthy with { Reach = [new ReachFact("the CA server", "10.0.0.9:15012", "no answer", Required: true)] }, "network").Level);
    }

    [Fact]
    public void Render_IsOneLinePerFinding_LevelCheckWhatAndWhatToDo()
    {
        List<Finding> findings = [new(FindingLevel.Ok, "config", "valid"), new(FindingLevel.Fail, "namespace", "gone", "create it"), new(FindingLevel.Warn, "network", "slow", "look")];
        string[] lines = DoctorFindings.Render(findings).Split('\n');
        Assert.Equal("ok    config     valid", lines[0]);
        Assert.Equal("fail  namespace  gone — create it", lines[1]);
        Assert.Equal("warn  network    slow — look", lines[2]);
        Assert.Contains("1 checks failed, 1 warnings", lines[4], StringComparison.Ordinal);
    }
}
