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

    private void Publish(RegistrySnapshot snapshot)
    {
        Volatile.Write(ref _current, snapshot);
        Interlocked.Increment(ref _version);
    }
}
