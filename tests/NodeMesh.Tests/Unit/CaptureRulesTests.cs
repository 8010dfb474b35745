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
