using System.Collections.Concurrent;
using NodeMesh.Authz;
using NodeMesh.State;

namespace NodeMesh.Proxy;

/// <summary>
/// Every live flow that was authorized, with what it was authorized for, so a policy change can close the
/// flows it now denies. Invariants: a flow registers after its decision and before its first byte, and
/// unregisters when it ends; closing a flow cancels its copy, which resets both ends.
/// </summary>
internal sealed class ConnectionManager
{
    private readonly ConcurrentDictionary<long, LiveFlow> _flows = new();
    private long _nextId;

    public int Count => _flows.Count;

    public Registration Register(AuthzRequest request, CancellationTokenSource abort, string description)
    {
        long id = Interlocked.Increment(ref _nextId);
        var flow = new LiveFlow(request, abort, description);
        _flows[id] = flow;
        return new Registration(this, id, flow);
    }

    /// <summary>Re-evaluates every live flow; closes those the policies now deny. Returns what was closed.</summary>
    public List<(string Flow, AuthzDecision Decision)> Reevaluate(PolicySet policies, RegistrySnapshot registry)
    {
        var closed = new List<(string, AuthzDecision)>();
        foreach (LiveFlow flow in _flows.Values)
        {
            // Labels and mode may have changed with the same reload: judge against the workload as it is now.
            Workload destination = registry.FindByIp(flow.Request.Destination.Ip) ?? flow.Request.Destination;
            AuthzRequest request = flow.Request with { Destination = destination };
            AuthzDecision decision = policies.Evaluate(request);
            bool strictRefusesPlaintext = destination.Mode == PeerMode.Strict && request.SourceIdentity is null;
            if (!decision.Allowed || strictRefusesPlaintext)
            {
                AuthzDecision reason = strictRefusesPlaintext && decision.Allowed
                    ? new AuthzDecision(false, "plaintext refused: workload is now STRICT", null, null, null)
                    : decision;
                if (flow.Close(reason))
                {
                    closed.Add((flow.Description, reason));
                }
            }
        }

        return closed;
    }

    internal sealed class LiveFlow(AuthzRequest request, CancellationTokenSource abort, string description)
    {
        private int _closed;

        public AuthzRequest Request { get; } = request;

        public string Description { get; } = description;

        public AuthzDecision? ClosedBecause { get; private set; }

        public bool Close(AuthzDecision decision)
        {
            if (Interlocked.Exchange(ref _closed, 1) != 0)
            {
                return false;
            }

            ClosedBecause = decision;
            try
            {
                abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The flow ended at the same moment.
            }

            return true;
        }
    }

    /// <summary>A flow's place in the table; disposing it removes the flow.</summary>
    internal sealed class Registration(ConnectionManager owner, long id, LiveFlow flow) : IDisposable
    {
        /// <summary>Why the flow was closed by a policy change, if it was.</summary>
        public AuthzDecision? ClosedBecause => flow.ClosedBecause;

        public void Dispose() => owner._flows.TryRemove(id, out _);
    }
}
