using System.Collections.Concurrent;
using System.Net;
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

    public void Reset(RegistrySnapshot snapshot) => Volatile.Write(ref _current, snapshot);

    public WorkloadCapture? FindCapture(IPAddress ip) => _captures.GetValueOrDefault(ip);

    public void Add(WorkloadCapture capture)
    {
        lock (_writeGate)
        {
            _captures[capture.Workload.Ip] = capture;
            Volatile.Write(ref _current, _current.With(capture.Workload));
        }
    }

    /// <summary>Replaces a registered workload's description (labels, mode) without touching its capture.</summary>
    public void Update(Workload updated)
    {
        lock (_writeGate)
        {
            if (_current.FindByIp(updated.Ip) is { } existing && existing.Name == updated.Name)
            {
                Volatile.Write(ref _current, _current.With(updated));
            }
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

            Volatile.Write(ref _current, _current.Without(name));
            return _captures.TryRemove(workload.Ip, out WorkloadCapture? capture) ? capture : null;
        }
    }
}
