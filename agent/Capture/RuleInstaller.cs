using System.Diagnostics;
using NodeMesh.Interop;

namespace NodeMesh.Capture;

/// <summary>
/// Applies <see cref="CaptureRules"/> and <see cref="Ipv6Rules"/> inside a namespace by running iptables-restore,
/// ip6tables-restore and ip through
/// <c>nsenter --net=/proc/AGENT-PID/fd/N</c>, where N is the namespace handle the agent already holds
/// (<see cref="NamespaceThread.Handle"/>), never the registration path: a path such as <c>/proc/PID/ns/net</c>
/// may name another namespace by the time the command runs, the held fd cannot. (Forking the commands from the
/// namespace thread itself would work too, but .NET starts helper threads, such as the one reaping children,
/// from whichever thread first needs them; one born in a workload's namespace would stay there.)
/// Arguments are fixed strings; workload metadata never reaches a command line, and rule text goes through stdin.
/// Rules carry their owner (<see cref="RuleOwner"/>): another running agent's rules are never rewritten or removed.
/// </summary>
internal static class RuleInstaller
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Installs the IPv6 refusal (if IPv6 is on in the namespace) and then the IPv4 capture rules. The owner is
    /// checked first, before anything is touched; the refusal goes before the capture and needs no listener, so a
    /// failure at any later step still leaves the namespace closed.
    /// </summary>
    public static async Task<Ipv6Plan> InstallAsync(NamespaceThread ns, CapturePorts ports, RuleOwner owner, bool ipv6Enabled, CancellationToken cancellationToken)
    {
        string existing = await RunAsync(ns, "iptables-save", [], stdin: null, cancellationToken);
        RuleOwner? found = RuleOwner.Find(existing);
        if (owner.Claim(found, RuleOwner.IsRunningAgent) == RuleClaim.OtherRunningAgent)
        {
            throw new CaptureException($"{ns.NetnsPath} is already captured by another agent (node {found!.Node}, pid {found.Pid}, " +
                $"instance {found.InstanceId}); only one agent may capture a namespace: stop the other agent or remove the workload from it");
        }

        Ipv6Plan ipv6 = Ipv6Rules.Decide(ipv6Enabled, Ip6tablesInstalled());
        switch (ipv6)
        {
            case Ipv6Plan.CannotRefuse:
                throw new CaptureException(Ipv6Rules.CannotRefuseMessage(ns.NetnsPath));
            case Ipv6Plan.Refuse:
                string existing6 = await RunAsync(ns, "ip6tables-save", [], stdin: null, cancellationToken);
                await RunAsync(ns, "ip6tables-restore", ["--noflush", "--wait"], Ipv6Rules.Install(existing6), cancellationToken);
                break;
        }

        await RunAsync(ns, "iptables-restore", ["--noflush", "--wait"], CaptureRules.Install(ports, existing, owner), cancellationToken);
        await RunAsync(ns, "ip", ["rule", "del", "fwmark", $"0x{CaptureRules.ReturnMark:x}/0x{CaptureRules.MarkMask:x}", "pref",
            CaptureRules.RulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture), "lookup",
            CaptureRules.RouteTable.ToString(System.Globalization.CultureInfo.InvariantCulture)], stdin: null, cancellationToken, allowFailure: true);
        await RunAsync(ns, "ip", ["-batch", "-"], CaptureRules.RoutingInstall(), cancellationToken);
        return ipv6;
    }

    /// <summary>Removes this agent's rules; false (nothing touched) if the rules belong to another running agent.</summary>
    public static async Task<bool> RemoveAsync(NamespaceThread ns, RuleOwner owner, CancellationToken cancellationToken)
    {
        string existing = await RunAsync(ns, "iptables-save", [], stdin: null, cancellationToken);
        if (owner.Claim(RuleOwner.Find(existing), RuleOwner.IsRunningAgent) == RuleClaim.OtherRunningAgent)
        {
            return false;
        }

        string plan = CaptureRules.Remove(existing);
        if (plan.Length > 0)
        {
            await RunAsync(ns, "iptables-restore", ["--noflush", "--wait"], plan, cancellationToken);
        }

        await RunAsync(ns, "ip", ["-force", "-batch", "-"], CaptureRules.RoutingRuleDelete() + CaptureRules.RoutingRouteFlush(), cancellationToken, allowFailure: true);

        // Whatever IPv6 is now, a refusal installed earlier goes with the workload.
        if (Ip6tablesInstalled())
        {
            string plan6 = Ipv6Rules.Remove(await RunAsync(ns, "ip6tables-save", [], stdin: null, cancellationToken));
            if (plan6.Length > 0)
            {
                await RunAsync(ns, "ip6tables-restore", ["--noflush", "--wait"], plan6, cancellationToken);
            }
        }

        return true;
    }

    /// <summary>Null if this agent's capture rules are all in place in the namespace, else what is wrong (a CNI CHECK).</summary>
    public static async Task<string?> VerifyAsync(NamespaceThread ns, RuleOwner owner, CancellationToken cancellationToken)
    {
        string existing = await RunAsync(ns, "iptables-save", [], stdin: null, cancellationToken);
        if (!CaptureRules.AllInstalled(existing))
        {
            return $"the capture rules in {ns.NetnsPath} are missing or incomplete";
        }

        return owner.Claim(RuleOwner.Find(existing), RuleOwner.IsRunningAgent) == RuleClaim.OtherRunningAgent
            ? $"the capture rules in {ns.NetnsPath} belong to another running agent"
            : null;
    }

    /// <summary>The iptables-save output of the namespace at a path (tests and diagnostics).</summary>
    public static Task<string> SaveAsync(string netns, CancellationToken cancellationToken) =>
        RunInAsync(netns, netns, "iptables-save", [], stdin: null, allowFailure: false, cancellationToken);

    /// <summary>The ip6tables-save output of the namespace at a path (tests and diagnostics).</summary>
    public static Task<string> SaveIpv6Async(string netns, CancellationToken cancellationToken) =>
        RunInAsync(netns, netns, "ip6tables-save", [], stdin: null, allowFailure: false, cancellationToken);

    /// <summary>Looked up on every call (as nsenter will look it up), so installing the package later is seen.</summary>
    private static bool Ip6tablesInstalled() => OnPath("ip6tables-restore") && OnPath("ip6tables-save");

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static async Task<string> RunAsync(NamespaceThread ns, string command, string[] args, string? stdin, CancellationToken cancellationToken, bool allowFailure = false)
    {
        // Held for the whole command, so the fd number nsenter opens cannot be closed and reused meanwhile.
        bool added = false;
        try
        {
            ns.Handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            throw new CaptureException($"the namespace {ns.NetnsPath} is no longer held (the workload is being removed)");
        }

        try
        {
            return await RunInAsync(NetworkNamespace.HeldPath(ns.Handle), ns.NetnsPath, command, args, stdin, allowFailure, cancellationToken);
        }
        finally
        {
            if (added)
            {
                ns.Handle.DangerousRelease();
            }
        }
    }

    private static async Task<string> RunInAsync(string heldPath, string netns, string command, string[] args, string? stdin, bool allowFailure, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("nsenter")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--net=" + heldPath);
        start.ArgumentList.Add("--");
        start.ArgumentList.Add(command);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start nsenter");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CommandTimeout);
        Task<string> output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        Task<string> error = process.StandardError.ReadToEndAsync(timeout.Token);
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin.AsMemory(), timeout.Token);
        }

        process.StandardInput.Close();
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{command} in {netns} did not finish within {CommandTimeout.TotalSeconds} s");
        }

        string stdout = await output;
        string stderr = await error;
        if (process.ExitCode != 0 && !allowFailure)
        {
            throw new CaptureException($"{command} {string.Join(' ', args)} in {netns} failed (exit {process.ExitCode}): {stderr.Trim()}");
        }

        return stdout;
    }
}

/// <summary>Capture could not be set up or removed for a workload.</summary>
internal sealed class CaptureException(string message) : Exception(message);
