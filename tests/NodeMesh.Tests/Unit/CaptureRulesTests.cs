using NodeMesh.Capture;

namespace NodeMesh.Tests.Unit;

public class CaptureRulesTests
{
    private static readonly CapturePorts Ports = new(15001, 15006);

    private const string EmptySave = """
        *mangle
        :PREROUTING ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        COMMIT
        *nat
        :OUTPUT ACCEPT [0:0]
        COMMIT
        """;

    [Fact]
    public void Install_OnCleanNamespace_AddsJumpsAndRules()
    {
        string plan = CaptureRules.Install(Ports, EmptySave);
        Assert.Contains("-I OUTPUT 1 -j NODEMESH-OUTPUT", plan, StringComparison.Ordinal);
        Assert.Contains("-I PREROUTING 1 -j NODEMESH-PRERT", plan, StringComparison.Ordinal);
        Assert.Contains("-I OUTPUT 1 -j NODEMESH-MGLOUT", plan, StringComparison.Ordinal);
        Assert.Contains("-j REDIRECT --to-ports 15001", plan, StringComparison.Ordinal);
        Assert.Contains("-j TPROXY --on-port 15006", plan, StringComparison.Ordinal);
        // The agent's own sockets are never captured.
        Assert.Contains("-m mark ! --mark 0x539/0xfff -j REDIRECT", plan, StringComparison.Ordinal);
        Assert.Equal(2, plan.Split('\n').Count(l => l == "COMMIT"));
    }

    [Fact]
    public void Install_IsIdempotent_NoSecondJump()
    {
        string installed = EmptySave
            .Replace("*mangle\n", "*mangle\n:NODEMESH-PRERT - [0:0]\n:NODEMESH-MGLOUT - [0:0]\n-A PREROUTING -j NODEMESH-PRERT\n-A OUTPUT -j NODEMESH-MGLOUT\n", StringComparison.Ordinal)
            .Replace("*nat\n", "*nat\n:NODEMESH-OUTPUT - [0:0]\n-A OUTPUT -j NODEMESH-OUTPUT\n", StringComparison.Ordinal);
        string plan = CaptureRules.Install(Ports, installed);
        Assert.DoesNotContain("-I OUTPUT", plan, StringComparison.Ordinal);
        Assert.DoesNotContain("-I PREROUTING", plan, StringComparison.Ordinal);
        // Declaring the chains flushes them, so the rules are replaced, not appended twice.
        Assert.Contains(":NODEMESH-OUTPUT - [0:0]", plan, StringComparison.Ordinal);
    }

    [Fact]
    public void Remove_DeletesJumpsThenChains_AndNothingWhenAbsent()
    {
        string installed = "*nat\n:OUTPUT ACCEPT [0:0]\n:NODEMESH-OUTPUT - [0:0]\n-A OUTPUT -j NODEMESH-OUTPUT\n-A NODEMESH-OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n";
        string plan = CaptureRules.Remove(installed);
        int delete = plan.IndexOf("-D OUTPUT -j NODEMESH-OUTPUT", StringComparison.Ordinal);
        int drop = plan.IndexOf("-X NODEMESH-OUTPUT", StringComparison.Ordinal);
        Assert.True(delete >= 0 && drop > delete, plan);
        Assert.DoesNotContain("*mangle", plan, StringComparison.Ordinal);
        Assert.Equal("", CaptureRules.Remove(EmptySave));
        Assert.False(CaptureRules.AnyInstalled(EmptySave));
        Assert.True(CaptureRules.AnyInstalled(installed));
    }

    [Fact]
    public void HasJump_LooksOnlyInTheNamedTable()
    {
        string save = "*filter\n-A OUTPUT -j NODEMESH-OUTPUT\nCOMMIT\n*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        Assert.False(CaptureRules.HasJump(save, "nat", "OUTPUT", "NODEMESH-OUTPUT"));
        Assert.True(CaptureRules.HasJump(save, "filter", "OUTPUT", "NODEMESH-OUTPUT"));
    }

    [Fact]
    public void Routing_SendsMarkedRepliesToLocalTable()
    {
        Assert.Contains("rule add fwmark 0x111/0xfff pref 32764 lookup 133", CaptureRules.RoutingInstall(), StringComparison.Ordinal);
        Assert.Contains("route replace local 0.0.0.0/0 dev lo table 133", CaptureRules.RoutingInstall(), StringComparison.Ordinal);
    }
}

public class Ipv6RulesTests
{
    private const string EmptySave = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    private static readonly string InstalledSave = EmptySave.Replace(
        ":OUTPUT ACCEPT [0:0]\n",
        ":OUTPUT ACCEPT [0:0]\n:NODEMESH-IN6 - [0:0]\n:NODEMESH-OUT6 - [0:0]\n-A INPUT -j NODEMESH-IN6\n-A OUTPUT -j NODEMESH-OUT6\n" +
        "-A NODEMESH-IN6 -p tcp -j REJECT --reject-with tcp-reset\n",
        StringComparison.Ordinal);

    [Fact]
    public void Install_RefusesTcpBothWays_OnEveryInterfaceButLo_WithAReset()
    {
        string[] plan = Ipv6Rules.Install(EmptySave).Split('\n');
        Assert.Equal("*filter", plan[0]);
        Assert.Contains("-I INPUT 1 -j NODEMESH-IN6", plan);
        Assert.Contains("-I OUTPUT 1 -j NODEMESH-OUT6", plan);
        // lo is exempt first, then every TCP segment is reset: no -d/-s, so ULA, global and link-local alike.
        Assert.Equal(["-A NODEMESH-IN6 -i lo -j RETURN", "-A NODEMESH-IN6 -p tcp -j REJECT --reject-with tcp-reset"],
            plan.Where(l => l.StartsWith("-A NODEMESH-IN6 ", StringComparison.Ordinal)));
        string[] output = plan.Where(l => l.StartsWith("-A NODEMESH-OUT6 ", StringComparison.Ordinal)).ToArray();
        Assert.Equal("-A NODEMESH-OUT6 -o lo -j RETURN", output[0]);
        Assert.Equal("-A NODEMESH-OUT6 -p tcp -j REJECT --reject-with tcp-reset", output[^1]);
        // The only other exemption is the INPUT rule's own reset: RST set and no payload or options.
        Assert.Equal("-A NODEMESH-OUT6 -p tcp -m tcp --tcp-flags RST RST -m length --length 60 -j RETURN", Assert.Single(output[1..^1]));
        Assert.Single(plan, l => l == "COMMIT");
        Assert.DoesNotContain(plan, l => l.Contains("ACCEPT", StringComparison.Ordinal) || l.Contains("-j DROP", StringComparison.Ordinal));
    }

    [Fact]
    public void Install_IsIdempotent_NoSecondJump_ChainsRedeclaredSoRulesAreReplaced()
    {
        string plan = Ipv6Rules.Install(InstalledSave);
        Assert.DoesNotContain("-I INPUT", plan, StringComparison.Ordinal);
        Assert.DoesNotContain("-I OUTPUT", plan, StringComparison.Ordinal);
        Assert.Contains(":NODEMESH-IN6 - [0:0]", plan, StringComparison.Ordinal);
        Assert.Contains(":NODEMESH-OUT6 - [0:0]", plan, StringComparison.Ordinal);
    }

    [Fact]
    public void Remove_DeletesJumpsThenChains_AndNothingWhenAbsent()
    {
        string plan = Ipv6Rules.Remove(InstalledSave);
        Assert.StartsWith("*filter\n", plan, StringComparison.Ordinal);
        foreach (string chain in new[] { Ipv6Rules.InputChain, Ipv6Rules.OutputChain })
        {
            int delete = plan.IndexOf($" -j {chain}\n", StringComparison.Ordinal);
            int drop = plan.IndexOf($"-X {chain}\n", StringComparison.Ordinal);
            Assert.True(delete >= 0 && drop > delete, plan);
        }

        Assert.Contains("-D INPUT -j NODEMESH-IN6", plan, StringComparison.Ordinal);
        Assert.Contains("-D OUTPUT -j NODEMESH-OUT6", plan, StringComparison.Ordinal);
        Assert.Equal("", Ipv6Rules.Remove(EmptySave));
        Assert.Equal("", Ipv6Rules.Remove(""));
        Assert.True(Ipv6Rules.AnyInstalled(InstalledSave));
        Assert.False(Ipv6Rules.AnyInstalled(EmptySave));
        // The IPv4 capture's removal never touches the IPv6 chains, nor the other way round.
        Assert.Equal("", CaptureRules.Remove(InstalledSave));
    }

    [Fact]
    public void Decide_RefusesWhenItCan_AndNeverLeavesIpv6Open()
    {
        Assert.Equal(Ipv6Plan.Refuse, Ipv6Rules.Decide(ipv6Enabled: true, ip6tablesInstalled: true));
        Assert.Equal(Ipv6Plan.CannotRefuse, Ipv6Rules.Decide(ipv6Enabled: true, ip6tablesInstalled: false));
        Assert.Equal(Ipv6Plan.NothingToRefuse, Ipv6Rules.Decide(ipv6Enabled: false, ip6tablesInstalled: true));
        Assert.Equal(Ipv6Plan.NothingToRefuse, Ipv6Rules.Decide(ipv6Enabled: false, ip6tablesInstalled: false));
    }

    [Fact]
    public void CannotRefuseMessage_NamesTheNamespaceTheToolAndTheWayOut()
    {
        string message = Ipv6Rules.CannotRefuseMessage("/var/run/netns/pod-a");
        Assert.Contains("/var/run/netns/pod-a", message, StringComparison.Ordinal);
        Assert.Contains("ip6tables-restore", message, StringComparison.Ordinal);
        Assert.Contains("iptables package", message, StringComparison.Ordinal);
        Assert.Contains("disable_ipv6", message, StringComparison.Ordinal);
    }

    [Fact]
    public void IsEnabled_OffOnlyWhenEveryValueReadsOne()
    {
        Assert.False(Ipv6Rules.IsEnabled(null)); // no IPv6 in the kernel
        Assert.False(Ipv6Rules.IsEnabled(["1\n", "1\n", "1\n", "1\n"]));
        Assert.True(Ipv6Rules.IsEnabled(["0\n", "0\n", "0\n", "0\n"]));
        // One interface (or "default", inherited by the next interface) still on.
        Assert.True(Ipv6Rules.IsEnabled(["1\n", "0\n", "1\n"]));
        // A value that could not be read is taken as on.
        Assert.True(Ipv6Rules.IsEnabled(["1\n", null]));
        Assert.True(Ipv6Rules.IsEnabled(["1\n", ""]));
    }
}
