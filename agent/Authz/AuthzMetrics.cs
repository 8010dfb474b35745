using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace NodeMesh.Authz;

/// <summary>Counters for authorization outcomes; labels are bounded (policy names come from the configuration).</summary>
internal sealed class AuthzMetrics : IDisposable
{
    private readonly Meter _meter = new("NodeMesh.Authz");
    private readonly Counter<long> _denied;
    private readonly Counter<long> _decisions;
    private readonly Counter<long> _dryRunDenied;
    private readonly Counter<long> _closedByPolicy;
    private readonly Counter<long> _reloads;
    private long _deniedTotal;
    private long _dryRunTotal;

    public AuthzMetrics()
    {
        _denied = _meter.CreateCounter<long>("nodemesh_authz_denied_total", description: "Connections denied by policy or mode.");
        _decisions = _meter.CreateCounter<long>("nodemesh_authz_decisions_total",
            description: "Authorization decisions, by decision (allow or deny), the policy that made it and destination workload.");
        _dryRunDenied = _meter.CreateCounter<long>("nodemesh_authz_dry_run_denied_total", description: "Connections a dry-run policy would have denied.");
        _reloads = _meter.CreateCounter<long>("nodemesh_config_reloads_total", description: "Changes of the config file seen, by result (applied or refused).");
        _closedByPolicy = _meter.CreateCounter<long>("nodemesh_authz_closed_flows_total", description: "Live flows closed because a new policy denies them.");
    }

    /// <summary>The meter itself, for a collector that must see this instance's measurements only (tests).</summary>
    public Meter Meter => _meter;

    public long Denied => Interlocked.Read(ref _deniedTotal);

    public long DryRunDenied => Interlocked.Read(ref _dryRunTotal);

    public void Deny(string destinationWorkload, string? policy)
    {
        Interlocked.Increment(ref _deniedTotal);
        _denied.Add(1, new TagList { { "destination_workload", destinationWorkload }, { "policy", policy ?? "default-deny" } });
    }

    /// <summary>
    /// Counts one decision under the policy that made it: its name, <c>default-allow</c> when no ALLOW policy
    /// selects the workload, <c>default-deny</c> when some do and none matched, <c>strict-mode</c> for plaintext to STRICT.
    /// </summary>
    public void Decided(string destinationWorkload, bool allowed, string? policy) =>
        _decisions.Add(1, new TagList
        {
            { "decision", allowed ? "allow" : "deny" },
            { "policy", policy ?? (allowed ? "default-allow" : "default-deny") },
            { "destination_workload", destinationWorkload },
        });

    public void DryRunDeny(string destinationWorkload, string policy)
    {
        Interlocked.Increment(ref _dryRunTotal);
        _dryRunDenied.Add(1, new TagList { { "destination_workload", destinationWorkload }, { "policy", policy } });
    }

    public void ClosedByPolicy(int count) => _closedByPolicy.Add(count);

    /// <param name="result"><c>applied</c> or <c>refused</c>.</param>
    public void ConfigReloaded(string result) => _reloads.Add(1, new KeyValuePair<string, object?>("result", result));

    public void Dispose() => _meter.Dispose();
}
