using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace NodeMesh.Authz;

/// <summary>Counters for authorization outcomes; labels are bounded (policy names come from the configuration).</summary>
internal sealed class AuthzMetrics : IDisposable
{
    private readonly Meter _meter = new("NodeMesh.Authz");
    private readonly Counter<long> _denied;
    private readonly Counter<long> _dryRunDenied;
    private readonly Counter<long> _closedByPolicy;
    private long _deniedTotal;
    private long _dryRunTotal;

    public AuthzMetrics()
    {
        _denied = _meter.CreateCounter<long>("nodemesh_authz_denied_total", description: "Connections denied by policy or mode.");
        _dryRunDenied = _meter.CreateCounter<long>("nodemesh_authz_dry_run_denied_total", description: "Connections a dry-run policy would have denied.");
        _closedByPolicy = _meter.CreateCounter<long>("nodemesh_authz_closed_flows_total", description: "Live flows closed because a new policy denies them.");
    }

    public long Denied => Interlocked.Read(ref _deniedTotal);

    public long DryRunDenied => Interlocked.Read(ref _dryRunTotal);

    public void Deny(string destinationWorkload, string? policy)
    {
        Interlocked.Increment(ref _deniedTotal);
        _denied.Add(1, new TagList { { "destination_workload", destinationWorkload }, { "policy", policy ?? "default-deny" } });
    }

    public void DryRunDeny(string destinationWorkload, string policy)
    {
        Interlocked.Increment(ref _dryRunTotal);
        _dryRunDenied.Add(1, new TagList { { "destination_workload", destinationWorkload }, { "policy", policy } });
    }

    public void ClosedByPolicy(int count) => _closedByPolicy.Add(count);

    public void Dispose() => _meter.Dispose();
}
