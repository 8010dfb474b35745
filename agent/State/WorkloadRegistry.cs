using System.Collections.Concurrent;
using System.Net;
using NodeMesh.Authz;
using NodeMesh.Capture;

namespace NodeMesh.State;

/// <summary>
/// The live registry: the current snapshot of all workloads and peers (swapped atomically), and the
/// capture of each local workload (its namespace thread and listeners).
/// </summary>
internal sealed class WorkloadRegistry
{
    private readonly ConcurrentDictionary<IPAddress, WorkloadCapture> _captures = new();
    private readonly Lock _writeGate = new();
    private RegistrySnapshot _current = RegistrySnapshot.Empty;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RegistrySnapshot Current => Volatile.Read(ref _current);

    public ICollection<WorkloadCapture> Captures => _captures.Values;

    private long _version;

    public void Reset(RegistrySnapshot snapshot)
    {
        lock (_writeGate)
        {
            Publish(snapshot);
        }
    }

    public WorkloadCapture? FindCapture(IPAddress ip) => _captures.GetValueOrDefault(ip);

    public void Add(WorkloadCapture capture)
    {
        lock (_writeGate)
        {
            _captures[capture.Workload.Ip] = capture;
            Publish(_current.With(capture.Workload));
        }
    }

    /// <summary>Snapshots published so far (each change is one), for tests and diagnostics.</summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>
    /// Applies a reload in one swap: registered workloads' descriptions (labels, mode; their captures are not
    /// touched) and the policies in force. No reader sees the new labels with the old policies, or the reverse.
    /// </summary>
    public RegistrySnapshot Reconfigure(IEnumerable<Workload> updated, PolicySet policies)
    {
        lock (_writeGate)
        {
            Publish(_current.Reconfigured(updated, policies));
            return _current;
        }
    }

    public WorkloadCapture? Remove(string name)
    {
        lock (_writeGate)
        {
            Workload? workload = _current.Workloads.FirstOrDefault(w => w.Name == name && w.IsLocal);
            if (workload is null)
            {
                return null;
            }

            Publish(_current.Without(name));
            return _captures.TryRemove(workload.Ip, out WorkloadCapture? capture) ? capture : null;
        }
    }

    /// <summary>
    /// Replaces every remote workload and peer node at once (a discovery source's new view), keeping the local
    /// workloads, and the services. A remote entry that claims a local workload's name or address is left out and named in the result:
    /// this node's own captures are the truth about this node.
    /// </summary>
    public IReadOnlyList<string> ReplaceRemote(IEnumerable<Workload> remote, IReadOnlyDictionary<string, IPEndPoint> peers, IEnumerable<MeshService>? services = null)
    {
        lock (_writeGate)
        {
            var conflicts = new List<string>();
            var byIp = new Dictionary<IPAddress, Workload>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (Workload local in _current.Workloads.Where(w => w.IsLocal))
            {
                byIp[local.Ip] = local;
                names.Add(local.Name);
            }

            foreach (Workload workload in remote)
            {
                if (byIp.TryGetValue(workload.Ip, out Workload? holder))
                {
                    conflicts.Add($"{workload.Name} on {workload.Node}: address {workload.Ip} is already {holder.Name}'s (on {holder.Node})");
                }
                else if (!names.Add(workload.Name))
                {
                    conflicts.Add($"{workload.Name} on {workload.Node}: the name is already registered");
                }
                else
                {
                    byIp[workload.Ip] = workload;
                }
            }

            Publish(new RegistrySnapshot(byIp.Values, peers, _current.Policies, services));
            return conflicts;
        }
    }

    /// <summary>
    /// True as soon as <paramref name="condition"/> holds for the snapshot in force (checked now and after each
    /// change, never polled); false if it still does not after <paramref name="timeout"/>.
    /// </summary>
    public async Task<bool> WaitUntilAsync(Func<RegistrySnapshot, bool> condition, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            long version = Version;
            if (condition(Current))
            {
                return true;
            }

            TimeSpan left = timeout - waited.Elapsed;
            if (left <= TimeSpan.Zero || !await WaitForChangeAsync(version, left, cancellationToken))
            {
                return condition(Current);
            }
        }
    }

    /// <summary>Completes at the next change after <paramref name="version"/>, or at <paramref name="timeout"/> (then false).</summary>
    public async Task<bool> WaitForChangeAsync(long version, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Task changed = Volatile.Read(ref _changed).Task;
        if (Version != version)
        {
            return true;
        }

        try
        {
            await changed.WaitAsync(timeout, cancellationToken);
            return true;
        }
        catch (TimeoutException)
        {
            return Version != version;
        }
    }

    private void Publish(RegistrySnapshot snapshot)
    {
        Volatile.Write(ref _current, snapshot);
        Interlocked.Increment(ref _version);
        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}
