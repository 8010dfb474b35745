using System.Collections.Concurrent;
using NodeMesh.Authz;
using NodeMesh.State;

namespace NodeMesh.Proxy;

/// <summary>
/// Every live flow, on every path, from its accept to its end; the one place flows are admitted (authorized)
/// and recorded. Invariants: a flow is in the table from <see cref="Open"/> until it is disposed; it is admitted
/// in the table, so a policy reload between the decision and the first byte cannot miss it; a policy change
/// closes the admitted flows it now denies; the record is written once, when the flow ends; shutdown waits for
/// the table to empty by signal (<see cref="WhenEmptyAsync"/>).
/// </summary>
internal sealed class ConnectionManager(FlowRecorder recorder, Authorizer authorizer)
{
    private readonly ConcurrentDictionary<long, Flow> _flows = new();
    private readonly Lock _emptyGate = new();
    private TaskCompletionSource? _empty;
    private long _nextId;

    /// <summary>Flows open now (being set up, carried, or ending).</summary>
    public int Count => _flows.Count;

    /// <summary>Opens a flow, counted from now until it is disposed.</summary>
    /// <param name="traceParent">The span context a peer agent sent with the flow: the flow's span is its child.</param>
    public Flow Open(string direction, string path, CancellationToken stopping, string? traceParent = null)
    {
        long id = Interlocked.Increment(ref _nextId);
        var flow = new Flow(this, id, direction, path, traceParent, stopping);
        _flows[id] = flow;
        return flow;
    }

    /// <summary>
    /// The authorization decision for <paramref name="flow"/> against the policies in force (and STRICT mode for
    /// plaintext), logged and counted; the flow is marked denied if it is. The same judgement is made again for
    /// the flow at every policy change while it lives.
    /// </summary>
    /// <param name="snapshot">The registry snapshot the request's destination was found in: its policies judge it.</param>
    public AuthzDecision Admit(Flow flow, RegistrySnapshot snapshot, AuthzRequest request, string path)
    {
        flow.Admitted = request;
        AuthzDecision decision = authorizer.Authorize(snapshot.Policies, request, path);
        if (!decision.Allowed)
        {
            flow.Deny(decision);
        }

        return decision;
    }

    /// <summary>Re-evaluates every admitted live flow; closes those the policies now deny. Returns what was closed.</summary>
    public List<(string Flow, AuthzDecision Decision)> Reevaluate(RegistrySnapshot registry)
    {
        var closed = new List<(string, AuthzDecision)>();
        foreach (Flow flow in _flows.Values)
        {
            if (flow.Admitted is not { } admitted || flow.Outcome is not null)
            {
                continue;
            }

            // Labels and mode may have changed with the same reload: judge against the workload as it is now.
            IAuthzSubject destination = registry.FindByIp(admitted.Destination.Ip) ?? admitted.Destination;
            AuthzDecision decision = Authorizer.Decide(registry.Policies, admitted with { Destination = destination });
            if (!decision.Allowed && flow.CloseBecause(decision))
            {
                closed.Add(($"{flow.Source} ({admitted.SourceIdentity?.Uri ?? "plaintext"}) -> {flow.Destination}", decision));
            }
        }

        return closed;
    }

    /// <summary>Completes when no flow is open (at once if none is).</summary>
    public Task WhenEmptyAsync()
    {
        lock (_emptyGate)
        {
            if (_flows.IsEmpty)
            {
                return Task.CompletedTask;
            }

            _empty ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _empty.Task;
        }
    }

    /// <summary>The flow starts carrying bytes: from now on they are counted while they move.</summary>
    internal void Carrying(Flow flow) => recorder.Carrying(flow);

    internal void Ended(Flow flow)
    {
        _flows.TryRemove(flow.Id, out _);
        recorder.Record(flow, flow.ToRecord());
        TaskCompletionSource? empty = null;
        lock (_emptyGate)
        {
            if (_flows.IsEmpty)
            {
                empty = _empty;
                _empty = null;
            }
        }

        empty?.TrySetResult();
    }
}
