using System.Diagnostics;

namespace NodeMesh.Capture;

/// <summary>
/// Applies <see cref="CaptureRules"/> and <see cref="Ipv6Rules"/> inside a namespace by running iptables-restore,
/// ip6tables-restore and ip through
/// <c>nsenter --net=PATH</c>. Arguments are fixed strings and validated paths; workload metadata never
/// reaches a command line, and rule text goes through stdin.
/// </summary>
internal static class RuleInstaller
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// Installs the IPv6 refusal (if IPv6 is on in the namespace) and then the IPv4 capture rules. The refusal
    /// goes first and needs no listener, so a failure at any later step still leaves the namespace closed.
    /// </summary>
    public static async Task<Ipv6Plan> InstallAsync(string netns, CapturePorts ports, bool ipv6Enabled, CancellationToken cancellationToken)
    {
        Ipv6Plan ipv6 = Ipv6Rules.Decide(ipv6Enabled, Ip6tablesInstalled());
        switch (ipv6)
        {
            case Ipv6Plan.CannotRefuse:
                throw new CaptureException(Ipv6Rules.CannotRefuseMessage(netns));
            case Ipv6Plan.Refuse:
                string existing6 = await RunAsync(netns, "ip6tables-save", [], stdin: null, cancellationToken);
                await RunAsync(netns, "ip6tables-restore", ["--noflush", "--wait"], Ipv6Rules.Install(existing6), cancellationToken);
                break;
        }

        string existing = await RunAsync(netns, "iptables-save", [], stdin: null, cancellationToken);
        await RunAsync(netns, "iptables-restore", ["--noflush", "--wait"], CaptureRules.Install(ports, existing), cancellationToken);
        await RunAsync(netns, "ip", ["rule", "del", "fwmark", $"0x{CaptureRules.ReturnMark:x}/0x{CaptureRules.MarkMask:x}", "pref",
            CaptureRules.RulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture), "lookup",
            CaptureRules.RouteTable.ToString(System.Globalization.CultureInfo.InvariantCulture)], stdin: null, cancellationToken, allowFailure: true);
        await RunAsync(netns, "ip", ["-batch", "-"], CaptureRules.RoutingInstall(), cancellationToken);
        return ipv6;
    }

    public static async Task RemoveAsync(string netns, CancellationToken cancellationToken)
    {
        string existing = await RunAsync(netns, "iptables-save", [], stdin: null, cancellationToken);
        string plan = CaptureRules.Remove(existing);
        if (plan.Length > 0)
        {
            await RunAsync(netns, "iptables-restore", ["--noflush", "--wait"], plan, cancellationToken);
        }

        await RunAsync(netns, "ip", ["-force", "-batch", "-"], CaptureRules.RoutingRuleDelete() + CaptureRules.RoutingRouteFlush(), cancellationToken, allowFailure: true);

        // Whatever IPv6 is now, a refusal installed earlier goes with the workload.
        if (Ip6tablesInstalled())
        {
            string plan6 = Ipv6Rules.Remove(await RunAsync(netns, "ip6tables-save", [], stdin: null, cancellationToken));
            if (plan6.Length > 0)
            {
                await RunAsync(netns, "ip6tables-restore", ["--noflush", "--wait"], plan6, cancellationToken);
            }
        }
    }

    /// <summary>The namespace's iptables-save output (tests and diagnostics).</summary>
    public static Task<string> SaveAsync(string netns, CancellationToken cancellationToken) =>
        RunAsync(netns, "iptables-save", [], stdin: null, cancellationToken);

    /// <summary>The namespace's ip6tables-save output (tests and diagnostics).</summary>
    public static Task<string> SaveIpv6Async(string netns, CancellationToken cancellationToken) =>
        RunAsync(netns, "ip6tables-save", [], stdin: null, cancellationToken);

    /// <summary>Looked up on every call (as nsenter will look it up), so installing the package later is seen.</summary>
    private static bool Ip6tablesInstalled() => OnPath("ip6tables-restore") && OnPath("ip6tables-save");

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static async Task<string> RunAsync(string netns, string command, string[] args, string? stdin, CancellationToken cancellationToken, bool allowFailure = false)
    {
        var start = new ProcessStartInfo("nsenter")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("--net=" + netns);
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
