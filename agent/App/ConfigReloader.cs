using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Authz;
using NodeMesh.Config;
using NodeMesh.Proxy;
using NodeMesh.State;

namespace NodeMesh.App;

/// <summary>
/// Watches the configuration file and applies what can change live: policies, and local workloads' mode and
/// labels, applied as one registry snapshot; and the gateway's routes, swapped as one table (a request in flight
/// keeps the rule it started with; connections, WebSockets among them, are not touched). A file that does not validate is refused and the last good configuration keeps serving; live flows
/// that the new configuration denies are closed. Other changes are reported as needing a restart.
/// </summary>
internal sealed partial class ConfigReloader(
    string path, AgentConfig initial, WorkloadRegistry registry, ConnectionManager connections,
    AuthzMetrics metrics, Gateway.GatewayRoutes routes, ILogger<ConfigReloader> logger) : BackgroundService
{
    /// <summary>Polling (not inotify alone) also catches editors that replace the file and bind-mounted ConfigMaps.</summary>
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        AgentConfig current = initial;
        (DateTime, long) stamp = Stamp();
        using var timer = new PeriodicTimer(Interval);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await timer.WaitForNextTickAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            (DateTime, long) next = Stamp();
            if (next == stamp)
            {
                continue;
            }

            stamp = next;
            AgentConfig loaded;
            try
            {
                loaded = ConfigLoader.Load(path);
                Apply(current, loaded);
            }
            catch (ConfigException ex)
            {
                metrics.ConfigReloaded("refused");
                Log.Refused(logger, path, string.Join("; ", ex.Errors));
                continue;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A reload must never take the agent down: the last good configuration keeps serving.
                metrics.ConfigReloaded("refused");
                Log.Refused(logger, path, $"{ex.GetType().Name}: {ex.Message}");
                continue;
            }

            metrics.ConfigReloaded("applied");
            current = loaded;
        }
    }

    private void Apply(AgentConfig previous, AgentConfig next)
    {
        PolicySet compiled = PolicyCompiler.Compile(next.Policies, next.TrustDomain, []);
        var updated = new List<Workload>();
        foreach (WorkloadConfig w in next.Workloads)
        {
            if (registry.Current.Workloads.FirstOrDefault(x => x.Name == w.Name && x.IsLocal) is { } existing)
            {
                updated.Add(existing with { Mode = ConfigLoader.ParseMode(w.Mode), Labels = w.Labels ?? new Dictionary<string, string>() });
            }
        }

        // Labels, modes and policies change together, in one swap; then the flows admitted under the old ones are judged again.
        RegistrySnapshot now = registry.Reconfigure(updated, compiled);
        List<(string Flow, AuthzDecision Decision)> closed = connections.Reevaluate(now);
        foreach ((string flow, AuthzDecision decision) in closed)
        {
            Log.FlowClosed(logger, flow, decision.Describe());
        }

        if (closed.Count > 0)
        {
            metrics.ClosedByPolicy(closed.Count);
        }

        routes.Replace(next.Gateway);
        string[] needsRestart = RestartOnlyChanges(previous, next).ToArray();
        Log.Applied(logger, path, compiled.Policies.Count, closed.Count, routes.Count, needsRestart.Length == 0 ? "none" : string.Join(", ", needsRestart));
    }

    internal static IEnumerable<string> RestartOnlyChanges(AgentConfig a, AgentConfig b)
    {
        if (a.Node != b.Node) yield return "node";
        if (a.TrustDomain != b.TrustDomain) yield return "trustDomain";
        if (a.Ca != b.Ca) yield return "ca";
        if (a.Ports != b.Ports) yield return "ports";
        if (a.Tunnel != b.Tunnel) yield return "tunnel";
        if (a.StateDir != b.StateDir || a.ApiSocket != b.ApiSocket) yield return "stateDir/apiSocket";
        if (a.Api != b.Api) yield return "api";
        if (!a.Nodes.SequenceEqual(b.Nodes)) yield return "nodes";
        if (!a.RemoteWorkloads.SequenceEqual(b.RemoteWorkloads)) yield return "remoteWorkloads";
        if (!a.Workloads.Select(w => (w.Name, w.Ip, w.Identity, w.Netns)).SequenceEqual(b.Workloads.Select(w => (w.Name, w.Ip, w.Identity, w.Netns))))
        {
            yield return "workloads (other than mode and labels)";
        }

        if (!a.Services.SequenceEqual(b.Services, ServiceComparer.Instance)) yield return "services";
        if (!Listeners(a).SequenceEqual(Listeners(b)) || a.Gateway.Limits != b.Gateway.Limits || a.Gateway.Identity != b.Gateway.Identity
            || a.Gateway.AccessLog != b.Gateway.AccessLog || !Policies(a).SequenceEqual(Policies(b)))
        {
            yield return "gateway (listeners, limits, identity, accessLog, backendPolicies)";
        }
    }

    private static IEnumerable<string> Listeners(AgentConfig c) => c.Gateway.Listeners.Select(l =>
        $"{l.Name} {l.Address}:{l.Port} {l.Protocol} {string.Join(",", l.Tls?.Certificates.Select(f => f.CertFile + "+" + f.KeyFile) ?? [])}");

    private static IEnumerable<string> Policies(AgentConfig c) => c.Gateway.BackendPolicies.Select(p =>
        $"{p.Backend} {p.LoadBalancer} {p.HealthCheck} {string.Join(",", p.HealthCheck?.ExpectedStatuses ?? [])} {p.OutlierDetection} {p.CircuitBreaker} {p.Tls}");

    /// <summary>Services by content (the record's lists compare by reference).</summary>
    private sealed class ServiceComparer : IEqualityComparer<ServiceConfig>
    {
        public static readonly ServiceComparer Instance = new();

        public bool Equals(ServiceConfig? x, ServiceConfig? y) => x is not null && y is not null && x.Name == y.Name
            && x.Addresses.SequenceEqual(y.Addresses) && x.Ports.SequenceEqual(y.Ports) && x.Endpoints.SequenceEqual(y.Endpoints);

        public int GetHashCode(ServiceConfig obj) => obj.Name.GetHashCode(StringComparison.Ordinal);
    }

    private (DateTime, long) Stamp()
    {
        try
        {
            var info = new FileInfo(path);
            return info.Exists ? (info.LastWriteTimeUtc, info.Length) : (DateTime.MinValue, -1);
        }
        catch (IOException)
        {
            return (DateTime.MinValue, -1);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 600, Level = LogLevel.Warning, Message = "configuration reload from {Path} refused, the last good configuration stays in force: {Errors}")]
        public static partial void Refused(ILogger logger, string path, string errors);

        [LoggerMessage(EventId = 601, Level = LogLevel.Information, Message = "configuration reloaded from {Path}: {Policies} policies, {Closed} live flows closed, {Routes} gateway routes; changes that need a restart: {NeedsRestart}")]
        public static partial void Applied(ILogger logger, string path, int policies, int closed, int routes, string needsRestart);

        [LoggerMessage(EventId = 602, Level = LogLevel.Warning, Message = "flow {Flow} closed: the new policy denies it: {Reason}")]
        public static partial void FlowClosed(ILogger logger, string flow, string reason);
    }
}
