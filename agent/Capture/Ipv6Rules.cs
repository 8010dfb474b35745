using System.Globalization;
using System.Text;

namespace NodeMesh.Capture;

/// <summary>
/// IPv6 in a workload's namespace, as pure text for <c>ip6tables-restore --noflush</c>. A workload has only an
/// IPv4 mesh address, so none of its IPv6 TCP could be captured and carried by the mesh; instead every IPv6 TCP
/// segment entering or leaving the namespace over any interface but lo (global, ULA and link-local alike) is
/// refused with a reset, so clients see a refusal, not a hang, and nothing travels in plaintext.
/// <list type="bullet">
/// <item>filter INPUT: TCP from any interface but lo is answered with a reset.</item>
/// <item>filter OUTPUT: TCP to any interface but lo is refused with a reset, except the bare resets the INPUT
/// rule itself sends (they pass OUTPUT too, and without them an inbound client would hang).</item>
/// </list>
/// These are filter rules that need no listener: they hold while the agent is down, and go only when the
/// workload is removed. Other IPv6 traffic (neighbour discovery, ICMPv6) is left alone; UDP is not captured
/// in either family.
/// </summary>
internal static class Ipv6Rules
{
    public const string InputChain = "NODEMESH-IN6";
    public const string OutputChain = "NODEMESH-OUT6";

    /// <summary>An IPv6 header (40 bytes) and a TCP header without options (20): a reset that carries nothing.</summary>
    private const int BareResetLength = 60;

    private static readonly (string Table, string Chain, string Hook)[] Jumps =
    [
        ("filter", InputChain, "INPUT"),
        ("filter", OutputChain, "OUTPUT"),
    ];

    /// <summary>
    /// The restore input that makes the namespace's IPv6 refusal exactly ours; <paramref name="existingRules"/> is
    /// its <c>ip6tables-save</c> output, so applying it again adds no second jump.
    /// </summary>
    public static string Install(string existingRules)
    {
        var sb = new StringBuilder();
        sb.Append("*filter\n");
        sb.Append(CultureInfo.InvariantCulture, $":{InputChain} - [0:0]\n");
        sb.Append(CultureInfo.InvariantCulture, $":{OutputChain} - [0:0]\n");
        foreach (var (table, chain, hook) in Jumps)
        {
            if (!CaptureRules.HasJump(existingRules, table, hook, chain))
            {
                sb.Append(CultureInfo.InvariantCulture, $"-I {hook} 1 -j {chain}\n");
            }
        }

        sb.Append(CultureInfo.InvariantCulture, $"-A {InputChain} -i lo -j RETURN\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {InputChain} -p tcp -j REJECT --reject-with tcp-reset\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {OutputChain} -o lo -j RETURN\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {OutputChain} -p tcp -m tcp --tcp-flags RST RST -m length --length {BareResetLength} -j RETURN\n");
        sb.Append(CultureInfo.InvariantCulture, $"-A {OutputChain} -p tcp -j REJECT --reject-with tcp-reset\n");
        sb.Append("COMMIT\n");
        return sb.ToString();
    }

    /// <summary>The restore input that removes every rule and chain <see cref="Install"/> created (empty if none).</summary>
    public static string Remove(string existingRules) => CaptureRules.RemoveChains(existingRules, Jumps);

    /// <summary>True if any of our chains is present in an <c>ip6tables-save</c> dump.</summary>
    public static bool AnyInstalled(string existingRules) => Jumps.Any(j => CaptureRules.HasChain(existingRules, j.Table, j.Chain));

    /// <summary>
    /// What to do about IPv6 in a namespace. IPv6 off means there is nothing to refuse; IPv6 on without
    /// ip6tables means the namespace cannot be guarded, and is not captured at all rather than half.
    /// </summary>
    public static Ipv6Plan Decide(bool ipv6Enabled, bool ip6tablesInstalled) => (ipv6Enabled, ip6tablesInstalled) switch
    {
        (false, _) => Ipv6Plan.NothingToRefuse,
        (true, true) => Ipv6Plan.Refuse,
        (true, false) => Ipv6Plan.CannotRefuse,
    };

    /// <summary>The error for <see cref="Ipv6Plan.CannotRefuse"/>: what is wrong, where, and the two ways out.</summary>
    public static string CannotRefuseMessage(string netns) =>
        $"IPv6 is enabled in {netns} but ip6tables-restore/ip6tables-save are not on PATH: the workload's IPv6 TCP could not be " +
        "refused, so it is not captured (install the iptables package, or disable IPv6 in the namespace: net.ipv6.conf.all.disable_ipv6=1)";

    /// <summary>
    /// Whether IPv6 is on in a namespace, from its <c>/proc/sys/net/ipv6/conf/*/disable_ipv6</c> values (null: the
    /// kernel has no IPv6 there). On if any entry is not "1": an interface, or <c>default</c>, which a new
    /// interface would inherit. An unreadable value counts as on.
    /// </summary>
    public static bool IsEnabled(IReadOnlyCollection<string?>? disableIpv6Values) =>
        disableIpv6Values is not null && disableIpv6Values.Any(v => v?.Trim() != "1");
}

/// <summary>What a workload's capture does about IPv6.</summary>
internal enum Ipv6Plan
{
    /// <summary>IPv6 is on: its TCP is refused both ways on every interface but lo.</summary>
    Refuse,

    /// <summary>IPv6 is off in the namespace (or the kernel): nothing to refuse.</summary>
    NothingToRefuse,

    /// <summary>IPv6 is on but ip6tables is missing: the workload must not be captured.</summary>
    CannotRefuse,
}
