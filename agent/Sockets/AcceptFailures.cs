using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Telemetry;

namespace NodeMesh.Sockets;

/// <summary>
/// Where one listener's failed accepts go: every one is counted (label <c>listener</c>); the log gets at most one
/// failure line per <see cref="LogInterval"/> with how many were not logged, and a line when accepting works again
/// after a run of failures that was logged. Near fd exhaustion accepts fail and succeed in turn; that is still a
/// handful of lines, not two per accept.
/// </summary>
internal sealed partial class AcceptFailures(string listener, EndPoint? endPoint, ILogger logger, MeshMetrics? metrics)
{
    internal static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private readonly LogThrottle _throttle = new(LogInterval);
    private int _inRun;
    private int _runLogged;

    public void Report(SocketError error, TimeSpan backoff)
    {
        metrics?.AcceptFailed(listener, error.ToString());
        Interlocked.Increment(ref _inRun);
        if (_throttle.ShouldLog(out int held))
        {
            Log.AcceptFailed(logger, listener, endPoint?.ToString() ?? "?", error.ToString(), (int)backoff.TotalMilliseconds, held);
            Volatile.Write(ref _runLogged, 1);
        }
    }

    public void Recovered()
    {
        int failures = Interlocked.Exchange(ref _inRun, 0);
        if (Interlocked.Exchange(ref _runLogged, 0) == 1)
        {
            Log.AcceptRecovered(logger, listener, endPoint?.ToString() ?? "?", failures);
        }
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
