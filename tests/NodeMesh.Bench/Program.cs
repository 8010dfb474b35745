using System.Diagnostics;
using System.Globalization;
using NodeMesh.Bench;

// The tunnel protocol microbenchmark: NodeMesh's own framed protocol against Nerdbank.Streams' MultiplexingStream,
// both over the same TLS 1.3 loopback connection setup, with the same 1 MiB per-stream window.
//
// Usage: NodeMesh.Bench [--quick] [--runs N] [--seconds S] [--markdown FILE]
//        NodeMesh.Bench registry [--workloads N] [--markdown FILE]   (the registry at fleet size; see RegistryBench)
//   --quick          3 runs of 2 s per measurement (default: 5 runs of 5 s)
//   --runs N         runs per transport; the report gives the median and the range
//   --seconds S      counted seconds per measurement (each after a warm-up)
//   --markdown FILE  also write the report as markdown to FILE
// Each run measures each transport in a fresh process (so the peak RSS is that transport's alone), the order of
// the two alternating from run to run.
return await BenchCommand.RunAsync(args);

internal static class BenchCommand
{
    private const string ChildFlag = "--child";

    public static async Task<int> RunAsync(string[] args)
    {
        try
        {
            if (args.Length > 0 && args[0] == ChildFlag)
            {
                return await RunChildAsync(args);
            }

            if (args.Length > 0 && args[0] == "registry")
            {
                int workloads = 10_000;
                string? markdown = null;
                for (int i = 1; i < args.Length; i++)
                {
                    switch (args[i])
                    {
                        case "--workloads":
                            workloads = PositiveInt(args, ++i, "--workloads");
                            break;
                        case "--markdown":
                            markdown = i + 1 < args.Length ? args[++i] : throw new ArgumentException("--markdown needs a file");
                            break;
                        default:
                            throw new ArgumentException($"unknown argument '{args[i]}' (registry [--workloads N] [--markdown FILE])");
                    }
                }

                return await RegistryBench.RunAsync(workloads, markdown);
            }

            return await RunDriverAsync(args);
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"NodeMesh.Bench: {ex.Message}");
            return 2;
        }
        catch (BenchFailedException ex)
        {
            Console.Error.WriteLine($"NodeMesh.Bench: {ex.Message}");
            return 1;
        }
    }

    private static async Task<int> RunDriverAsync(string[] args)
    {
        int runs = 5;
        double seconds = 5;
        string? markdown = null;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    runs = 3;
                    seconds = 2;
                    break;
                case "--runs":
                    runs = PositiveInt(args, ++i, "--runs");
                    break;
                case "--seconds":
                    seconds = PositiveInt(args, ++i, "--seconds");
                    break;
                case "--markdown":
                    markdown = i + 1 < args.Length ? args[++i] : throw new ArgumentException("--markdown needs a file");
                    break;
                default:
                    throw new ArgumentException($"unknown argument '{args[i]}' (see the usage at the top of Program.cs)");
            }
        }

        string[] transports = [NodeMeshTransport.Id, MultiplexingTransport.Id];
        var results = new List<RunResult>();
        for (int run = 1; run <= runs; run++)
        {
            foreach (string transport in run % 2 == 1 ? transports : transports.Reverse())
            {
                Console.Error.WriteLine($"[microbench] run {run}/{runs}: {transport}, {seconds} s per measurement");
                results.Add(await RunChildProcessAsync(transport, seconds));
            }
        }

        var report = new Report(results, runs, seconds);
        Console.WriteLine(report.ToText());
        if (markdown is not null)
        {
            await File.WriteAllTextAsync(markdown, report.ToMarkdown());
        }

        return 0;
    }

    private static async Task<RunResult> RunChildProcessAsync(string transport, double seconds)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet")
        {
            start.ArgumentList.Add(typeof(BenchCommand).Assembly.Location);
        }

        foreach (string arg in new[] { ChildFlag, transport, seconds.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        // The agent's gen0 budget (agent/NodeMesh.Agent.csproj bakes it into the AOT binary; the JIT reads it here).
        start.Environment.TryAdd("DOTNET_GCgen0MaxBudget", "400000");
        using Process child = Process.Start(start) ?? throw new BenchFailedException($"cannot start {start.FileName}");
        Task<string> output = child.StandardOutput.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds((seconds + 2) * 3 + 60));
        try
        {
            await child.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            child.Kill();
            throw new BenchFailedException($"{transport}: the measuring process did not finish in time");
        }

        if (child.ExitCode != 0)
        {
            throw new BenchFailedException($"{transport}: the measuring process failed (exit {child.ExitCode}; its error is above)");
        }

        return RunResult.Parse(transport, await output);
    }

    private static async Task<int> RunChildAsync(string[] args)
    {
        if (args.Length != 3 || !double.TryParse(args[2], CultureInfo.InvariantCulture, out double seconds))
        {
            throw new ArgumentException($"{ChildFlag} TRANSPORT SECONDS");
        }

        TimeSpan duration = TimeSpan.FromSeconds(seconds);
        TimeSpan warmup = TimeSpan.FromSeconds(Math.Min(1, seconds / 2));
        using var tls = new LoopbackTls();
        await using BenchTransport transport = await BenchTransport.ConnectAsync(args[1], tls);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"info transport={transport.Name} cipher={transport.Cipher} rss_connected_mib={ProcessMemory.RssMiB():F1} peak_reset={ProcessMemory.ResetPeak()}"));
        var measurements = new Measurements(transport, warmup, duration);
        Console.WriteLine((await measurements.BulkAsync("single", 1)).ToLine(transport.Name));
        Console.WriteLine((await measurements.BulkAsync("eight", 8)).ToLine(transport.Name));
        Console.WriteLine((await measurements.RoundTripsAsync()).ToLine(transport.Name));
        return 0;
    }

    private static int PositiveInt(string[] args, int index, string name) =>
        index < args.Length && int.TryParse(args[index], CultureInfo.InvariantCulture, out int value) && value > 0
            ? value
            : throw new ArgumentException($"{name} needs a positive whole number");
}

internal sealed class BenchFailedException(string message) : Exception(message);
