using NodeMesh.Contracts;

namespace NodeMesh.Telemetry;

/// <summary>The most recent flows, bounded (oldest dropped), for the local API and the demo summary.</summary>
internal sealed class FlowLog
{
    private readonly FlowRecord?[] _ring;
    private long _next;
    private long _refused;

    public FlowLog(int capacity = 4096) => _ring = new FlowRecord?[capacity];

    public long Refused => Interlocked.Read(ref _refused);

    public void Add(FlowRecord record)
    {
        if (record.Outcome is FlowOutcome.Refused or FlowOutcome.Denied)
        {
            Interlocked.Increment(ref _refused);
        }

        long slot = Interlocked.Increment(ref _next) - 1;
        Volatile.Write(ref _ring[slot % _ring.Length], record);
    }

    public List<FlowRecord> Snapshot()
    {
        long end = Interlocked.Read(ref _next);
        long start = Math.Max(0, end - _ring.Length);
        var result = new List<FlowRecord>((int)(end - start));
        for (long i = start; i < end; i++)
        {
            if (Volatile.Read(ref _ring[i % _ring.Length]) is { } record)
            {
                result.Add(record);
            }
        }

        return result;
    }
}
