using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Telemetry;

/// <summary>
/// Debian's <c>prometheus</c> server, run in the topology's ext namespace (the LAN, like a monitoring host),
/// scraping the given targets every second; queried through its HTTP API.
/// </summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private const string Listen = "127.0.0.1:9090";

    private readonly Topology _mesh;
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly string _dir;

    private PrometheusServer(Topology mesh, Process process, string dir)
    {
        _mesh = mesh;
        _process = process;
        _dir = dir;
    }

    internal sealed record Series(IReadOnlyDictionary<string, string> Labels, double Value);

    public static async Task<PrometheusServer> StartAsync(Topology mesh, IReadOnlyList<IPEndPoint> targets)
    {
        string dir = Path.Combine(mesh.WorkDir, $"prometheus-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        string config = Path.Combine(dir, "prometheus.yml");
        await File.WriteAllTextAsync(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: nodemesh
                metrics_path: /stats/prometheus
                static_configs:
                  - targets: [{string.Join(", ", targets.Select(t => $"'{t}'"))}]
            """);
        var start = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in (string[])["netns", "exec", mesh.Ext.Namespace, "prometheus", $"--config.file={config}",
                     $"--storage.tsdb.path={Path.Combine(dir, "data")}", $"--web.listen-address={Listen}"])
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start prometheus");
        var server = new PrometheusServer(mesh, process, dir);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (DateTime end = DateTime.UtcNow + TimeSpan.FromSeconds(20); ; await Task.Delay(200))
        {
            CommandResult ready = await mesh.Ext.RunAsync("curl", "-sS", "--fail", "--max-time", "2", $"http://{Listen}/-/ready");
            if (ready.ExitCode == 0)
            {
                return server;
            }

            if (process.HasExited || DateTime.UtcNow > end)
            {
                await server.DisposeAsync();
                throw new InvalidOperationException($"prometheus did not become ready: {server.Output}");
            }
        }
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Queries <paramref name="query"/> (PromQL) until <paramref name="done"/> holds for its series.</summary>
    public async Task<IReadOnlyList<Series>> WaitForSeriesAsync(string query, Func<IReadOnlyList<Series>, bool> done, TimeSpan timeout)
    {
        IReadOnlyList<Series> series = [];
        for (DateTime end = DateTime.UtcNow + timeout; DateTime.UtcNow < end; await Task.Delay(500))
        {
            series = await QueryAsync(query);
            if (done(series))
            {
                return series;
            }
        }

        CommandResult targets = await _mesh.Ext.RunAsync("curl", "-sS", "--max-time", "2", $"http://{Listen}/api/v1/targets");
        throw new TimeoutException($"prometheus never had what the test waits for; last answer to {query}: " +
            $"{string.Join("; ", series.Select(s => string.Join(",", s.Labels.Select(l => $"{l.Key}={l.Value}")) + " " + s.Value))}\ntargets: {targets.Stdout}\n{Output}");
    }

    public async Task<IReadOnlyList<Series>> QueryAsync(string query)
    {
        CommandResult curl = await _mesh.Ext.RunAsync("curl", "-sS", "--fail", "--max-time", "2", "-G", $"http://{Listen}/api/v1/query", "--data-urlencode", $"query={query}");
        if (curl.ExitCode != 0)
        {
            return [];
        }

        using JsonDocument answer = JsonDocument.Parse(curl.Stdout);
        var series = new List<Series>();
        foreach (JsonElement result in answer.RootElement.GetProperty("data").GetProperty("result").EnumerateArray())
        {
            var labels = result.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
            double value = double.Parse(result.GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture);
            series.Add(new Series(labels, value));
        }

        return series;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // The topology's work directory goes at the end anyway.
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
