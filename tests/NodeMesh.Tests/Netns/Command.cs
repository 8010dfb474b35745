using System.Diagnostics;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>The outcome of one command run to completion (or killed at its deadline).</summary>
internal sealed record CommandResult(string CommandLine, int ExitCode, string Stdout, string Stderr, bool TimedOut)
{
    public bool Succeeded => !TimedOut && ExitCode == 0;

    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append('`').Append(CommandLine).Append("` ");
        sb.Append(TimedOut ? "timed out" : $"exited {ExitCode}");
        if (Stdout.Length > 0)
        {
            sb.Append("\n  stdout: ").Append(Stdout.TrimEnd());
        }

        if (Stderr.Length > 0)
        {
            sb.Append("\n  stderr: ").Append(Stderr.TrimEnd());
        }

        return sb.ToString();
    }
}

/// <summary>Runs short-lived commands with a deadline; a command that overruns is killed (by its pid).</summary>
internal static class Command
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    public static Task<CommandResult> RunAsync(string file, params string[] args) => RunAsync(DefaultTimeout, file, args);

    public static async Task<CommandResult> RunAsync(TimeSpan timeout, string file, params string[] args)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        string commandLine = file + " " + string.Join(' ', args);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {commandLine}");
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        bool timedOut = false;
        using (var deadline = new CancellationTokenSource(timeout))
        {
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
        }

        return new CommandResult(commandLine, process.ExitCode, await stdout, await stderr, timedOut);
    }

    /// <summary>Runs a command that must succeed; throws with its output otherwise.</summary>
    public static async Task<CommandResult> RunCheckedAsync(TimeSpan timeout, string file, params string[] args)
    {
        CommandResult result = await RunAsync(timeout, file, args);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"command failed: {result}");
        }

        return result;
    }
}
