using System.Diagnostics;

namespace NodeMesh.Capture;

/// <summary>
/// Applies <see cref="CaptureRules"/> inside a namespace by running iptables-restore and ip through
/// <c>nsenter --net=PATH</c>. Arguments are fixed strings and validated paths; workload metadata never
/// reaches a command line, and rule text goes through stdin.
/// </summary>
internal static class RuleInstaller
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(20);

    public static async Task InstallAsync(string netns, CapturePorts ports, CancellationToken cancellationToken)
    {
        string existing = await RunAsync(netns, "iptables-save", [], stdin: null, cancellationToken);
        await RunAsync(netns, "iptables-restore", ["--noflush", "--wait"], CaptureRules.Install(ports, existing), cancellationToken);
        await RunAsync(netns, "ip", ["rule", "del", "fwmark", $"0x{CaptureRules.ReturnMark:x}/0x{CaptureRules.MarkMask:x}", "pref",
            CaptureRules.RulePriority.ToString(System.Globalization.CultureInfo.InvariantCulture), "lookup",
            CaptureRules.RouteTable.ToString(System.Globalization.CultureInfo.InvariantCulture)], stdin: null, cancellationToken, allowFailure: true);
        await RunAsync(netns, "ip", ["-batch", "-"], CaptureRules.RoutingInstall(), cancellationToken);
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
    }

    /// <summary>The namespace's iptables-save output (tests and diagnostics).</summary>
    public static Task<string> SaveAsync(string netns, CancellationToken cancellationToken) =>
        RunAsync(netns, "iptables-save", [], stdin: null, cancellationToken);

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
