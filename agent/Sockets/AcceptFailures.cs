using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Telemetry;

namespace NodeMesh.Sockets;

/// <summary>
/// Where one listener's failed accepts go: every one is counted (label <c>listener</c>); the log gets the first
/// failure of a run, then at most one line per <see cref="LogInterval"/> with how many were not logged, and a
/// line when accepting works again. Under fd exhaustion that is a handful of lines, not one per retry.
/// </summary>
internal sealed partial class AcceptFailures(string listener, EndPoint? endPoint, ILogger logger, MeshMetrics? metrics)
{
    internal static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private readonly LogThrottle _throttle = new(LogInterval);
    private int _inRun;

    public void Report(SocketError error, TimeSpan backoff)
    {
        metrics?.AcceptFailed(listener, error.ToString());
        Interlocked.Increment(ref _inRun);
        if (_throttle.ShouldLog(out int held))
        {
            Log.AcceptFailed(logger, listener, endPoint?.ToString() ?? "?", error.ToString(), (int)backoff.TotalMilliseconds, held);
        }
    }

    public void Recovered()
    {
        int failures = Interlocked.Exchange(ref _inRun, 0);
        _throttle.Reset();
        Log.AcceptRecovered(logger, listener, endPoint?.ToString() ?? "?", failures);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 800, Level = LogLevel.Warning,
            Message = "{Listener} listener {EndPoint}: accept failed ({Error}); retrying in {BackoffMs} ms ({Held} more failures since the last report)")]
        public static partial void AcceptFailed(ILogger logger, string listener, string endPoint, string error, int backoffMs, int held);

        [LoggerMessage(EventId = 801, Level = LogLevel.Information, Message = "{Listener} listener {EndPoint}: accepting again after {Failures} failed accepts")]
        public static partial void AcceptRecovered(ILogger logger, string listener, string endPoint, int failures);
    }
}
