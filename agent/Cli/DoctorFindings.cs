using System.Text;
using System.Text.Json.Serialization;

namespace NodeMesh.Cli;

[JsonConverter(typeof(JsonStringEnumConverter<FindingLevel>))]
internal enum FindingLevel
{
    [JsonStringEnumMemberName("ok")]
    Ok,

    [JsonStringEnumMemberName("warn")]
    Warn,

    [JsonStringEnumMemberName("fail")]
    Fail,
}

/// <summary>One thing <c>nodemesh check</c> found: what it checked, what it saw, and what to do about it.</summary>
internal sealed record Finding(FindingLevel Level, string Check, string What, string? Fix = null);

/// <summary>What <c>nodemesh check</c> prints with <c>-o json</c>.</summary>
internal sealed record DoctorReport(string Config, bool Ok, IReadOnlyList<Finding> Findings);

/// <summary>A network namespace of a configured workload as found: null fields were not looked at (not permitted).</summary>
internal sealed record NamespaceFact(string Workload, string Ip, string Netns, bool Exists, bool? HoldsIp, string? Error = null);

/// <summary>A file or directory the agent needs to read; <see cref="Error"/> null when it can.</summary>
internal sealed record FileFact(string Setting, string Path, string? Error, bool NeededNow = true);

internal enum PortState
{
    Free,
    InUse,
    NotLocal,
    Denied,
}

/// <summary>A port the agent listens on, as found by binding it for a moment.</summary>
internal sealed record PortFact(string Setting, string EndPoint, PortState State, string? Detail = null);

/// <summary>Something the agent connects to (a peer's tunnel port, the CA server); <see cref="Error"/> null when it answered.</summary>
internal sealed record ReachFact(string What, string EndPoint, string? Error, bool Required);

/// <summary>Everything <c>nodemesh check</c> looked at, gathered before anything is decided.</summary>
internal sealed record DoctorFacts
{
    public bool Root { get; init; }
    public bool NetAdmin { get; init; }
    public bool SysAdmin { get; init; }

    /// <summary>Tools the capture runs (iptables-restore, ...) that are not on PATH.</summary>
    public IReadOnlyList<string> MissingTools { get; init; } = [];

    /// <summary>Kernel features tried in a throw-away namespace: name, and null when it worked or why not. Empty when not tried.</summary>
    public IReadOnlyList<(string Feature, string? Error)> Kernel { get; init; } = [];

    public IReadOnlyList<NamespaceFact> Namespaces { get; init; } = [];
    public IReadOnlyList<FileFact> Files { get; init; } = [];
    public IReadOnlyList<PortFact> Ports { get; init; } = [];

    /// <summary>The node name of an agent that answered on the configured API socket; null when none did.</summary>
    public string? RunningAgent { get; init; }

    public string ApiSocket { get; init; } = "";
    public IReadOnlyList<ReachFact> Reach { get; init; } = [];
}

/// <summary>Decides the findings from the facts: pure, so every rule is unit-tested without a machine to break.</summary>
internal static class DoctorFindings
{
    private const string PrivilegeFix = "run the agent as root, or give it CAP_NET_ADMIN and CAP_SYS_ADMIN (the systemd unit does: AmbientCapabilities=)";

    public static List<Finding> Decide(DoctorFacts facts)
    {
        List<Finding> findings = [];
        bool privileged = facts.Root || (facts.NetAdmin && facts.SysAdmin);
        findings.Add(facts.Root ? new(FindingLevel.Ok, "privileges", "running as root")
            : privileged ? new(FindingLevel.Ok, "privileges", "CAP_NET_ADMIN and CAP_SYS_ADMIN held")
            : new(FindingLevel.Fail, "privileges", $"not root, and without {(facts.NetAdmin ? "" : "CAP_NET_ADMIN")}{(facts.NetAdmin || facts.SysAdmin ? "" : " and ")}{(facts.SysAdmin ? "" : "CAP_SYS_ADMIN")}: the agent cannot enter namespaces or install rules; the checks below that need them were skipped", PrivilegeFix));

        findings.Add(facts.MissingTools.Count == 0
            ? new(FindingLevel.Ok, "tools", "iptables-save/-restore, ip6tables-save/-restore, nsenter and ip are on PATH")
            : new(FindingLevel.Fail, "tools", $"not on PATH: {string.Join(", ", facts.MissingTools)}", "install the iptables, util-linux and iproute2 packages (apt-get install iptables util-linux iproute2)"));

        foreach ((string feature, string? error) in facts.Kernel)
        {
            findings.Add(error is null
                ? new(FindingLevel.Ok, "kernel", $"iptables {feature} works (tried in a throw-away namespace)")
                : new(FindingLevel.Fail, "kernel", $"iptables {feature} does not work: {error}", $"load the kernel module (modprobe {KernelModule(feature)}), or use a kernel built with it"));
        }

        foreach (NamespaceFact ns in facts.Namespaces)
        {
            string what = $"workload {ns.Workload}: {ns.Netns}";
            findings.Add(!ns.Exists ? new(FindingLevel.Fail, "namespace", $"{what} does not exist", $"create it (ip netns add NAME) or fix workloads[].netns; the agent refuses to start without it")
                : ns.HoldsIp is null ? new(FindingLevel.Warn, "namespace", $"{what} exists; its addresses were not looked at{(ns.Error is null ? "" : ": " + ns.Error)}", "run 'nodemesh check' as root to check them")
                : ns.HoldsIp.Value ? new(FindingLevel.Ok, "namespace", $"{what} holds {ns.Ip}")
                : new(FindingLevel.Fail, "namespace", $"{what} does not hold {ns.Ip}", $"add the address in the namespace (ip -n NAME addr add {ns.Ip}/24 dev eth0) or fix workloads[].ip"));
        }

        foreach (FileFact file in facts.Files)
        {
            findings.Add(file.Error is null ? new(FindingLevel.Ok, "files", $"{file.Setting}: {file.Path} is readable")
                : new(file.NeededNow ? FindingLevel.Fail : FindingLevel.Warn, "files", $"{file.Setting}: {file.Path}: {file.Error}",
                    file.NeededNow ? $"create it or fix {file.Setting}, and make it readable by the agent's user" : $"needed only for a first join; create it with 'nodemesh ca token create' on the CA's node"));
        }

        foreach (PortFact port in facts.Ports)
        {
            findings.Add(port.State switch
            {
                PortState.Free => new(FindingLevel.Ok, "ports", $"{port.Setting}: {port.EndPoint} is free"),
                PortState.InUse when facts.RunningAgent is { } node => new(FindingLevel.Ok, "ports",
                    $"{port.Setting}: {port.EndPoint} is held by the running nodemesh agent of node {node} (answering on {facts.ApiSocket})"),
                PortState.InUse => new(FindingLevel.Fail, "ports", $"{port.Setting}: {port.EndPoint} is in use by another program{(port.Detail is null ? "" : ": " + port.Detail)}",
                    $"find it with 'ss -ltnp sport = :{port.EndPoint[(port.EndPoint.LastIndexOf(':') + 1)..]}' and stop it, or choose another {port.Setting}"),
                PortState.NotLocal => new(FindingLevel.Fail, "ports", $"{port.Setting}: {port.EndPoint} is not an address of this machine",
                    "set node.address to an address of this node (ip -4 addr)"),
                _ => new(FindingLevel.Fail, "ports", $"{port.Setting}: {port.EndPoint} may not be bound by this user{(port.Detail is null ? "" : ": " + port.Detail)}", PrivilegeFix),
            });
        }

        if (facts.RunningAgent is { } running)
        {
            findings.Add(new(FindingLevel.Ok, "agent", $"a nodemesh agent (node {running}) answers on {facts.ApiSocket}"));
        }

        foreach (ReachFact reach in facts.Reach)
        {
            findings.Add(reach.Error is null ? new(FindingLevel.Ok, "network", $"{reach.What}: {reach.EndPoint} accepts connections")
                : new(reach.Required ? FindingLevel.Fail : FindingLevel.Warn, "network", $"{reach.What}: {reach.EndPoint}: {reach.Error}",
                    reach.Required ? "start the CA's agent, or fix ca.server and the firewall between the nodes"
                        : "if that node's agent should be running: 'systemctl status nodemesh' there, and check nodes[].address and the firewall (flows to it are refused meanwhile)"));
        }

        return findings;
    }

    private static string KernelModule(string feature) => feature switch
    {
        "TPROXY" => "xt_TPROXY",
        "REDIRECT" => "xt_REDIRECT",
        "mark" => "xt_mark",
        _ => "xt_" + feature,
    };

    /// <summary>One line a finding: <c>ok|warn|fail  CHECK  what — what to do</c>.</summary>
    public static string Render(IReadOnlyList<Finding> findings)
    {
        var text = new StringBuilder();
        int check = findings.Select(f => f.Check.Length).DefaultIfEmpty(0).Max();
        foreach (Finding f in findings)
        {
            text.Append($"{Level(f.Level),-4}  {f.Check.PadRight(check)}  {f.What}");
            if (f.Fix is not null)
            {
                text.Append(" — ").Append(f.Fix);
            }

            text.Append('\n');
        }

        int failed = findings.Count(f => f.Level == FindingLevel.Fail), warned = findings.Count(f => f.Level == FindingLevel.Warn);
        text.Append(failed == 0 ? $"\nno problems found{(warned == 0 ? "" : $" ({warned} warnings)")}\n" : $"\n{failed} checks failed, {warned} warnings\n");
        return text.ToString();
    }

    private static string Level(FindingLevel level) => level switch
    {
        FindingLevel.Ok => "ok",
        FindingLevel.Warn => "warn",
        _ => "fail",
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = true)]
[JsonSerializable(typeof(DoctorReport))]
internal sealed partial class DoctorJsonContext : JsonSerializerContext;
