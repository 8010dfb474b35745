using System.Globalization;
using System.Text.RegularExpressions;

namespace NodeMesh.Capture;

/// <summary>
/// The agent that owns a namespace's capture rules, written into them as an iptables comment
/// (<see cref="Comment"/>) so that an agent rewrites or removes only its own rules and never those of another
/// agent on the node that is still running. <see cref="InstanceId"/> is kept in the agent's state directory, so
/// a restarted agent recognises its own rules; the pid tells whether the owner still runs.
/// </summary>
internal sealed partial record RuleOwner(string Node, string InstanceId, int Pid)
{
    private const string AgentProcessName = "nodemesh";

    /// <summary>The iptables comment (only a-z, 0-9, '.', '-', '=', '/': no quoting needed anywhere).</summary>
    public string Comment => string.Create(CultureInfo.InvariantCulture, $"nodemesh-owner={Node}/{InstanceId}/pid={Pid}");

    /// <summary>The owner named in an <c>iptables-save</c> dump; null if the rules carry no owner (or there are none).</summary>
    public static RuleOwner? Find(string existingRules)
    {
        Match match = OwnerComment().Match(existingRules);
        return match.Success && int.TryParse(match.Groups[3].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int pid)
            ? new RuleOwner(match.Groups[1].Value, match.Groups[2].Value, pid)
            : null;
    }

    /// <summary>Whether this agent may install over, or remove, rules whose owner is <paramref name="found"/>.</summary>
    public RuleClaim Claim(RuleOwner? found, Func<int, bool> isRunningAgent) =>
        found is null ? RuleClaim.Unowned
        : found.InstanceId == InstanceId ? RuleClaim.Ours
        : found.Pid != Pid && isRunningAgent(found.Pid) ? RuleClaim.OtherRunningAgent
        : RuleClaim.LeftByStoppedAgent;

    /// <summary>True if <paramref name="pid"/> is a running nodemesh process.</summary>
    public static bool IsRunningAgent(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/comm").TrimEnd('\n') == AgentProcessName;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"nodemesh-owner=([a-z0-9.-]{1,63})/([0-9a-f]{16})/pid=([0-9]{1,10})")]
    private static partial Regex OwnerComment();
}

/// <summary>Whose rules a namespace holds, as far as this agent is concerned.</summary>
internal enum RuleClaim
{
    /// <summary>No owner recorded (no rules, or rules of an agent version that did not record one).</summary>
    Unowned,

    /// <summary>This agent's own rules (this run or an earlier run with the same state directory).</summary>
    Ours,

    /// <summary>Another agent's rules, and that agent no longer runs: they may be taken over.</summary>
    LeftByStoppedAgent,

    /// <summary>Another agent's rules, and it still runs: they must not be touched.</summary>
    OtherRunningAgent,
}
