using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Config;
using NodeMesh.Discovery;
using NodeMesh.State;
using NodeMesh.Telemetry;

namespace NodeMesh.Bench;

/// <summary>
/// The registry at fleet size: a real etcd-server on loopback holding N workloads (spread over 100 nodes), and
/// the agent's own <see cref="EtcdRegistrySource"/> syncing it into a <see cref="WorkloadRegistry"/>. Measures the
/// first sync (list, fold, swap), the managed memory the registry holds per workload, and how long one change
/// (a workload put, then deleted) takes from the store's answer to the registry's swap.
/// </summary>
internal static class RegistryBench
{
    private const string Prefix = "/nodemesh/";
    private const int Nodes = 100;
    private const int Changes = 30;

    public static async Task<int> RunAsync(int workloads, string? markdown)
    {
        string dir = Path.Combine(Path.GetTempPath(), "nm-registry-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        int clientPort = FreePort(), peerPort = FreePort();
        var url = new Uri($"http://127.0.0.1:{clientPort}");
        using Process etcd = StartEtcd(dir, clientPort, peerPort);
        try
        {
            await using var store = new EtcdStore(new EtcdOptions { Endpoints = [url] });
            await WaitHealthyAsync(store);
            var fill = Stopwatch.StartNew();
            await FillAsync(store, workloads);
            Console.Error.WriteLine($"[registry] {workloads} workloads on {Nodes} nodes put in {fill.Elapsed.TotalSeconds:F1} s");

            long before = Heap();
            var registry = new WorkloadRegistry();
            var config = new AgentConfig
            {
                Node = new NodeConfig { Name = "observer", Address = "10.231.0.250" },
                Discovery = new DiscoveryConfig { Source = DiscoverySource.Etcd, Etcd = new EtcdConfig { Endpoints = [url] } },
            };
            using var metrics = new MeshMetrics();
            await using var source = new EtcdRegistrySource(config, registry, metrics, NullLogger<EtcdRegistrySource>.Instance);
            var sync = Stopwatch.StartNew();
            source.Start();
            await source.Synced.WaitAsync(TimeSpan.FromMinutes(2));
            double syncSeconds = sync.Elapsed.TotalSeconds;
            int known = registry.Current.Workloads.Count();
            if (known != workloads)
            {
                throw new BenchFailedException($"the registry holds {known} workloads after the first sync, not {workloads}");
            }

            long held = Heap() - before;
            var putTimes = new List<double>();
            var deleteTimes = new List<double>();
            for (int i = 0; i < Changes; i++)
            {
                var ip = IPAddress.Parse($"10.250.{i / 250}.{(i % 250) + 1}");
                string key = RegistryKey.ForWorkload(Prefix, "node1", $"change-{i}");
                putTimes.Add(await TimeChangeAsync(registry, () => store.PutAsync(key, Workload($"change-{i}", "node1", ip), 0, CancellationToken.None),
                    r => r.FindByIp(ip) is not null));
                deleteTimes.Add(await TimeChangeAsync(registry, () => store.DeleteAsync(key, CancellationToken.None), r => r.FindByIp(ip) is null));
            }

            string report = string.Create(CultureInfo.InvariantCulture, $"""
                  registry with {workloads} workloads on {Nodes} nodes (etcd-server on loopback, the agent's EtcdRegistrySource):
                    first sync (list, fold, swap):      {syncSeconds * 1000:F0} ms
                    managed memory held:                {held / 1048576.0:F1} MiB ({(double)held / workloads:F0} bytes per workload)
                    one change, put -> registry swap:   median {Median(putTimes):F1} ms, max {putTimes.Max():F1} ms ({Changes} changes)
                    one change, delete -> swap:         median {Median(deleteTimes):F1} ms, max {deleteTimes.Max():F1} ms
                """);
            Console.WriteLine(report);
            if (markdown is not null)
            {
                await File.WriteAllTextAsync(markdown, string.Create(CultureInfo.InvariantCulture, $"""
                    | registry, {workloads} workloads on {Nodes} nodes | value |
                    |---|---:|
                    | first sync: list, fold, swap (ms) | {syncSeconds * 1000:F0} |
                    | managed memory held (MiB) | {held / 1048576.0:F1} |
                    | per workload (bytes) | {(double)held / workloads:F0} |
                    | one change, put to registry swap, median (ms) | {Median(putTimes):F1} |
                    | one change, put to registry swap, max (ms) | {putTimes.Max():F1} |
                    | one change, delete to registry swap, median (ms) | {Median(deleteTimes):F1} |

                    """));
            }

            GC.KeepAlive(registry);
            return 0;
        }
        finally
        {
            etcd.Kill(entireProcessTree: true);
            await etcd.WaitForExitAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>From the change's call to the registry swap that shows it, in ms (a swap per store event; each is awaited).</summary>
    private static async Task<double> TimeChangeAsync(WorkloadRegistry registry, Func<Task> change, Func<RegistrySnapshot, bool> shows)
    {
        var watch = Stopwatch.StartNew();
        await change();
        if (!await registry.WaitUntilAsync(shows, TimeSpan.FromSeconds(10), CancellationToken.None))
        {
            throw new BenchFailedException("a change did not reach the registry within 10 s");
        }

        return watch.Elapsed.TotalMilliseconds;
    }

    private static async Task FillAsync(EtcdStore store, int workloads)
    {
        for (int n = 1; n <= Nodes; n++)
        {
            string node = $"node{n}";
            byte[] record = JsonSerializer.SerializeToUtf8Bytes(new NodeRecord { Name = node, Address = $"10.231.{n / 250}.{(n % 250) + 1}:15008", Transports = ["tls"] },
                RegistryJsonContext.Default.NodeRecord);
            await store.PutAsync(RegistryKey.ForNode(Prefix, node), record, 0, CancellationToken.None);
        }

        // 64 puts in flight at a time.
        using var gate = new SemaphoreSlim(64);
        await Task.WhenAll(Enumerable.Range(0, workloads).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                string node = $"node{(i % Nodes) + 1}";
                var ip = new IPAddress([10, (byte)(100 + (i >> 16)), (byte)(i >> 8), (byte)i]);
                await store.PutAsync(RegistryKey.ForWorkload(Prefix, node, $"w{i}"), Workload($"w{i}", node, ip), 0, CancellationToken.None);
            }
            finally
            {
                gate.Release();
            }
        }));
    }

    private static byte[] Workload(string name, string node, IPAddress ip) => JsonSerializer.SerializeToUtf8Bytes(new WorkloadRecord
    {
        Name = name,
        Node = node,
        Ips = [ip.ToString()],
        Identity = $"spiffe://cluster.local/ns/bench/sa/{name}",
        Mode = "STRICT",
        Labels = new Dictionary<string, string> { ["app"] = name, ["tier"] = "bench" },
    }, RegistryJsonContext.Default.WorkloadRecord);

    private static long Heap()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static double Median(List<double> values)
    {
        List<double> sorted = [.. values.Order()];
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }

    private static Process StartEtcd(string dir, int clientPort, int peerPort)
    {
        var start = new ProcessStartInfo("etcd") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[]
        {
            "--name", "bench", "--data-dir", Path.Combine(dir, "data"),
            "--listen-client-urls", $"http://127.0.0.1:{clientPort}", "--advertise-client-urls", $"http://127.0.0.1:{clientPort}",
            "--listen-peer-urls", $"http://127.0.0.1:{peerPort}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{peerPort}",
            "--initial-cluster", $"bench=http://127.0.0.1:{peerPort}",
        })
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start) ?? throw new BenchFailedException("cannot start etcd (./build.sh deps installs etcd-server)");
        var log = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task WaitHealthyAsync(EtcdStore store)
    {
        for (var watch = Stopwatch.StartNew(); watch.Elapsed < TimeSpan.FromSeconds(20); await Task.Delay(100))
        {
            try
            {
                await store.ListAsync("/health-probe/", CancellationToken.None);
                return;
            }
            catch (Exception ex) when (ex is Grpc.Core.RpcException or HttpRequestException or IOException)
            {
                // Not up yet.
            }
        }

        throw new BenchFailedException("etcd did not answer within 20 s");
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
