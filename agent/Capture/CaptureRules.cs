using System.Globalization;
using System.Text;

namespace NodeMesh.Capture;

/// <summary>
/// The capture rules installed inside one workload's network namespace, as pure text for
/// <c>iptables-restore --noflush</c> (applied atomically per table). Decided here, applied by
/// <see cref="RuleInstaller"/>, so the rule set is unit-tested without a namespace.
/// <list type="bullet">
/// <item>nat OUTPUT: the workload's own TCP is REDIRECTed to the outbound listener, except the agent's own
/// (marked) sockets and traffic to itself over lo.</item>
/// <item>mangle PREROUTING: new TCP arriving from outside is TPROXY'd to the inbound plaintext listener;
/// packets of the agent's delivery sockets (arriving over lo with the agent mark) set a connmark so...</item>
/// <item>mangle OUTPUT: ...the application's replies to them get a mark that policy routing sends back over
/// lo to the agent's transparent socket instead of out of the pod.</item>
/// </list>
/// If the agent is down, the REDIRECT target has no listener, so connections are refused: nothing leaves
/// in plaintext.
/// </summary>
internal static class CaptureRules
{
    public const string NatChain = "NODEMESH-OUTPUT";
    public const string ManglePreChain = "NODEMESH-PRERT";
    public const string MangleOutChain = "NODEMESH-MGLOUT";

    /// <summary>SO_MARK of every socket the agent opens; the rules never capture these.</summary>
    public const uint AgentMark = 0x539;

    /// <summary>Connection/packet mark that routes replies back to the agent over lo.</summary>
    public const uint ReturnMark = 0x111;

    public const uint MarkMask = 0xfff;

    /// <summary>Policy routing table with a local default route over lo.</summary>
    public const int RouteTable = 133;

    public const int RulePriority = 32764;

    private static readonly (string Table, string Chain, string Hook)[] Jumps =
    [
        ("nat", NatChain, "OUTPUT"),
        ("mangle", ManglePreChain, "PREROUTING"),
        ("mangle", MangleOutChain, "OUTPUT"),
    ];

    /// <summary>
    /// The restore input that makes the namespace's capture rules exactly ours. <paramref name="existingRules"/>
    /// is the namespace's <c>iptables-save</c> output: jumps already present are not added twice, so
    /// applying the plan again (an agent restart) changes nothing.
    /// </summary>
    public static string Install(CapturePorts ports, string existingRules, RuleOwner? owner = null)
    {
        var mark = Hex(AgentMark, MarkMask);
        var ret = Hex(ReturnMark, MarkMask);
        var sb = new StringBuilder();

        sb.Append("*mangle\n");
        sb.Append(CultureInfo.InvariantCulture, $":{ManglePreChain} - [0:0]\n");
        sb.Append(CultureInfo.InvariantCulture, $":{MangleOutChain} - [0:0]\n");
        AppendJumpIfMissing(sb, existingRules, "mangle", "PREROUTING", ManglePreChain);
        AppendJumpIfMissing(sb, existingRules, "mangle", "OUTPUT", MangleOutChain);
        sb.Append(CultureInfo.InvariantCulture, $"-A {ManglePreChain} -m mark --mark {mark} -j CONNMARK --set-xmark {ret}\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {ManglePreChain} -p tcp -i lo ! -d 127.0.0.1/32 -j ACCEPT\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {ManglePreChain} -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {ManglePreChain} -p tcp ! -d 127.0.0.1/32 -m mark ! --mark {mark} -j TPROXY --on-port {ports.InboundPlaintext} --on-ip 0.0.0.0 --tproxy-mark {ret}\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {MangleOutChain} -m connmark --mark {ret} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n");
        sb.Append("COMMIT\n");

        sb.Append("*nat\n");
        sb.Append(CultureInfo.InvariantCulture, $":{NatChain} - [0:0]\n");
        AppendJumpIfMissing(sb, existingRules, "nat", "OUTPUT", NatChain);
        if (owner is not null)
        {
            // A rule with no target: it only records which agent owns this namespace's rules.
            sb.Append(CultureInfo.InvariantCulture, $"-A {NatChain} -m comment --comment {owner.Comment}\n");
        }

        sb.Append(CultureInfo.InvariantCulture, $"-A {NatChain} -p tcp -m mark --mark {ret} -j ACCEPT\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {NatChain} ! -d 127.0.0.1/32 -o lo -j ACCEPT\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {NatChain} ! -d 127.0.0.1/32 -p tcp -m mark ! --mark {mark} -j REDIRECT --to-ports {ports.Outbound}\n");
        sb.Append("COMMIT\n");
        return sb.ToString();
    }

    /// <summary>The restore input that removes every rule and chain <see cref="Install"/> created.</summary>
    public static string Remove(string existingRules) => RemoveChains(existingRules, Jumps);

    /// <summary>
    /// The restore input that removes <paramref name="jumps"/> and their chains, as far as they are present in
    /// <paramref name="existingRules"/>: empty when nothing of them is left.
    /// </summary>
    internal static string RemoveChains(string existingRules, (string Table, string Chain, string Hook)[] jumps)
    {
        var sb = new StringBuilder();
        foreach (string table in jumps.Select(j => j.Table).Distinct())
        {
            var chains = jumps.Where(j => j.Table == table).ToArray();
            bool any = chains.Any(j => HasChain(existingRules, table, j.Chain));
            if (!any)
            {
                continue;
            }

            sb.Append(CultureInfo.InvariantCulture, $"*{table}\n");
            foreach (var (_, chain, hook) in chains)
            {
                if (HasJump(existingRules, table, hook, chain))
                {
                    sb.Append(CultureInfo.InvariantCulture, $"-D {hook} -j {chain}\n");
                }
            }

            foreach (var (_, chain, _) in chains)
            {
                if (HasChain(existingRules, table, chain))
                {
                    sb.Append(CultureInfo.InvariantCulture, $":{chain} - [0:0]\n");
                }
            }

            foreach (var (_, chain, _) in chains)
            {
                if (HasChain(existingRules, table, chain))
                {
                    sb.Append(CultureInfo.InvariantCulture, $"-X {chain}\n");
                }
            }

            sb.Append("COMMIT\n");
        }

        return sb.ToString();
    }

    /// <summary>True if any of our chains is present in an <c>iptables-save</c> dump.</summary>
    public static bool AnyInstalled(string existingRules) => Jumps.Any(j => HasChain(existingRules, j.Table, j.Chain));

    /// <summary>Whether every chain of the capture is in <paramref name="existingRules"/> (a CNI CHECK).</summary>
    public static bool AllInstalled(string existingRules) => Jumps.All(j => HasChain(existingRules, j.Table, j.Chain));

    /// <summary>The <c>ip -batch</c> commands for the policy route that returns marked replies over lo.</summary>
    public static string RoutingInstall() =>
        $"rule add fwmark {Hex(ReturnMark, MarkMask)} pref {RulePriority} lookup {RouteTable}\n" +
        $"route replace local 0.0.0.0/0 dev lo table {RouteTable}\n";

    public static string RoutingRuleDelete() => $"rule del fwmark {Hex(ReturnMark, MarkMask)} pref {RulePriority} lookup {RouteTable}\n";

    public static string RoutingRouteFlush() => $"route flush table {RouteTable}\n";

    private static void AppendJumpIfMissing(StringBuilder sb, string existing, string table, string hook, string chain)
    {
        if (!HasJump(existing, table, hook, chain))
        {
            sb.Append(CultureInfo.InvariantCulture, $"-I {hook} 1 -j {chain}\n");
        }
    }

    internal static bool HasJump(string save, string table, string hook, string chain) =>
        TableLines(save, table).Any(l => l == $"-A {hook} -j {chain}");

    internal static bool HasChain(string save, string table, string chain) =>
        TableLines(save, table).Any(l => l.StartsWith($":{chain} ", StringComparison.Ordinal));

    private static IEnumerable<string> TableLines(string save, string table)
    {
        bool inTable = false;
        foreach (string raw in save.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.StartsWith('*'))
            {
                inTable = line == "*" + table;
            }
            else if (inTable)
            {
                yield return line;
            }
        }
    }

    private static string Hex(uint value, uint mask) =>
        string.Create(CultureInfo.InvariantCulture, $"0x{value:x}/0x{mask:x}");
}

/// <summary>The agent's ports inside a workload namespace.</summary>
internal readonly record struct CapturePorts(int Outbound, int InboundPlaintext);
