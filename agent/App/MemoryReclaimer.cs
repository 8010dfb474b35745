using System.Runtime;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Interop;
using NodeMesh.Proxy;
using NodeMesh.Telemetry;

namespace NodeMesh.App;

/// <summary>
/// Gives memory back after a crowd of flows has gone. The GC keeps what a peak needed committed and glibc keeps
/// what native code freed, so an agent that once held 5,000 flows would stay that big while serving a handful.
/// When the open flows have fallen by at least <see cref="Drop"/> and to at most half their peak since the last
/// reclaim, one aggressive, compacting full collection runs and the native heap is trimmed: rare (a drop of
/// that size at most every <see cref="Interval"/>), and paid only when the agent has just become less busy.
/// </summary>
internal sealed partial class MemoryReclaimer(ConnectionManager connections, MeshMetrics metrics, ILogger<MemoryReclaimer> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    public const int Drop = 1000;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        int peak = 0;
        using var timer = new PeriodicTimer(Interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                int open = connections.Count;
                peak = Math.Max(peak, open);
                if (!ShouldReclaim(peak, open))
                {
                    continue;
                }

                long before = Environment.WorkingSet;
                GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
                GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                NativeHeap.Trim();
                long after = Environment.WorkingSet;
                metrics.MemoryReclaimed(Math.Max(0, before - after));
                Log.Reclaimed(logger, peak, open, (before - after) / 1048576.0, after / 1048576.0);
                peak = open;
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Whether the fall from <paramref name="peak"/> to <paramref name="open"/> flows is worth a reclaim.</summary>
    internal static bool ShouldReclaim(int peak, int open) => peak - open >= Drop && open <= peak / 2;

    private static partial class Log
    {
        [LoggerMessage(EventId = 30, Level = LogLevel.Information, Message = "open flows fell from {Peak} to {Open}: memory reclaimed, {Freed:F1} MiB given back, {Resident:F1} MiB resident")]
        public static partial void Reclaimed(ILogger logger, int peak, int open, double freed, double resident);
    }
}
