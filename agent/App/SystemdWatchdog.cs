using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;
using NodeMesh.State;

namespace NodeMesh.App;

/// <summary>
/// Keeps systemd's watchdog (<c>WatchdogSec=</c>) fed and its status line current. READY=1 and STOPPING=1 are the
/// host's (AddSystemd): READY once every hosted service has started, STOPPING when SIGTERM begins the stop. This
/// service sends WATCHDOG=1 at half the interval systemd asked for, from the thread pool, so an agent whose pool
/// is wedged stops pinging and is restarted; and STATUS= with the number of workloads served.
/// Registered before <see cref="MeshAgent"/>, so it stops after it: the pings go on through the drain.
/// </summary>
internal sealed partial class SystemdWatchdog(
    WorkloadRegistry registry,
    IHostApplicationLifetime lifetime,
    ILogger<SystemdWatchdog> logger,
    ISystemdNotifier? notifier = null) : BackgroundService
{
    /// <summary>
    /// Adds this service, and makes sure the host talks to systemd whenever systemd gave it a NOTIFY_SOCKET. AddSystemd
    /// recognises systemd only by the parent process's name (or LISTEN_PID): started through anything that forks, in a
    /// container (podman --sdnotify), or by a supervisor that speaks the same protocol, the agent would never say READY
    /// and a Type=notify unit would be killed at TimeoutStartSec. sd_notify(3) itself goes by NOTIFY_SOCKET alone.
    /// Call after AddSystemd (the last IHostLifetime registered wins).
    /// </summary>
    public static void Register(IServiceCollection services)
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET")) && !SystemdHelpers.IsSystemdService())
        {
            services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
            services.AddSingleton<IHostLifetime, SystemdLifetime>();
        }

        services.AddHostedService<SystemdWatchdog>();
    }

    /// <summary>How often the status line is refreshed when systemd asked for no watchdog.</summary>
    private static readonly TimeSpan StatusInterval = TimeSpan.FromSeconds(2);

    private static readonly ServiceState Watchdog = new("WATCHDOG=1");

    /// <summary>
    /// The period to ping at: half of <c>WATCHDOG_USEC</c>, or null when there is no watchdog for this process
    /// (unset, not a positive number, or <c>WATCHDOG_PID</c> naming another process), as sd_watchdog_enabled(3) reads them.
    /// </summary>
    internal static TimeSpan? PingInterval(string? usec, string? pid, int ownPid)
    {
        if (!ulong.TryParse(usec, NumberStyles.None, CultureInfo.InvariantCulture, out ulong micros) || micros == 0)
        {
            return null;
        }

        if (!string.IsNullOrEmpty(pid) && (!int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int watched) || watched != ownPid))
        {
            return null;
        }

        // Half the interval in 100 ns ticks (micros * 10 / 2); at least 1 ms, so a tiny value cannot make a busy
        // loop, and at most a day (PeriodicTimer takes no more than ~49 days; pinging early is harmless).
        long ticks = micros > (ulong)(long.MaxValue / 5) ? long.MaxValue : (long)micros * 5;
        return TimeSpan.FromTicks(Math.Clamp(ticks, TimeSpan.TicksPerMillisecond, TimeSpan.TicksPerDay));
    }

    /// <summary>The STATUS= line systemctl status shows.</summary>
    internal static string Status(int workloads) => workloads == 1 ? "serving 1 workload" : $"serving {workloads} workloads";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (notifier is not { IsEnabled: true })
        {
            return;
        }

        TimeSpan? ping = PingInterval(
            Environment.GetEnvironmentVariable("WATCHDOG_USEC"), Environment.GetEnvironmentVariable("WATCHDOG_PID"), Environment.ProcessId);
        try
        {
            // Nothing before the agent is ready: systemd arms the watchdog when start-up completes (TimeoutStartSec covers it).
            await Task.Delay(Timeout.Infinite, lifetime.ApplicationStarted).WaitAsync(stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (stoppingToken.IsCancellationRequested)
            {
                return;
            }

            if (ping is TimeSpan period)
            {
                Log.Enabled(logger, period.TotalMilliseconds * 2);
            }

            // The first message waits one period: READY=1 goes out from an ApplicationStarted callback of its own, and
            // nothing of ours may overtake it.
            using var timer = new PeriodicTimer(ping ?? StatusInterval);
            string? status = null;
            bool failing = false;
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                string now = Status(registry.Captures.Count);
                bool statusChanged = now != status;
                failing = Send(ping is null ? null : Watchdog, statusChanged ? new ServiceState("STATUS=" + now) : null, failing);
                if (!failing && statusChanged)
                {
                    status = now;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Sends what is due; returns whether it failed (logged once per run of failures, not per ping).</summary>
    private bool Send(ServiceState? watchdog, ServiceState? status, bool failing)
    {
        try
        {
            if (watchdog is { } w)
            {
                notifier!.Notify(w);
            }

            if (status is { } s)
            {
                notifier!.Notify(s);
            }

            if (failing)
            {
                Log.Recovered(logger);
            }

            return false;
        }
        catch (SocketException ex)
        {
            if (!failing)
            {
                Log.NotifyFailed(logger, Environment.GetEnvironmentVariable("NOTIFY_SOCKET") ?? "", ex.Message);
            }

            return true;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 35, Level = LogLevel.Information, Message = "systemd watchdog: {Timeout} ms, pinged at half that")]
        public static partial void Enabled(ILogger logger, double timeout);

        [LoggerMessage(EventId = 36, Level = LogLevel.Warning, Message = "cannot notify systemd on {Socket}: {Error}; the watchdog will restart the agent if this goes on")]
        public static partial void NotifyFailed(ILogger logger, string socket, string error);

        [LoggerMessage(EventId = 37, Level = LogLevel.Information, Message = "notifying systemd works again")]
        public static partial void Recovered(ILogger logger);
    }
}
