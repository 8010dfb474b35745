using NodeMesh.Contracts;

namespace NodeMesh.Telemetry;

/// <summary>The most recent flows, bounded (oldest dropped), for the local API and the demo summary.</summary>
internal sealed class FlowLog
{
    private readonly FlowRecord?[] _ring;

    // The sequence number (slot + 1) of the record in each ring slot, written after the record: a reader that sees
    // the same number before and after reading the record knows which flow it read, and that it was not overwritten.
    private readonly long[] _sequences;
    private long _next;
    private long _refused;

    public FlowLog(int capacity = 4096)
    {
        _ring = new FlowRecord?[capacity];
        _sequences = new long[capacity];
    }

    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>The sequence number of the newest record (0 before the first): flows recorded since the start.</summary>
    public long Latest => Interlocked.Read(ref _next);

    public void Add(FlowRecord record)
    {
        if (record.Outcome is FlowOutcome.Refused or FlowOutcome.Denied)
        {
            Interlocked.Increment(ref _refused);
        }

        long slot = Interlocked.Increment(ref _next) - 1;
        int index = (int)(slot % _ring.Length);
        Volatile.Write(ref _sequences[index], 0);
        Volatile.Write(ref _ring[index], record);
        Volatile.Write(ref _sequences[index], slot + 1);
    }

    public List<FlowRecord> Snapshot() => Snapshot(0);

    /// <summary>The records after sequence number <paramref name="since"/>, oldest first, each with its <see cref="FlowRecord.Sequence"/>.</summary>
    public List<FlowRecord> Snapshot(long since)
    {
        long end = Interlocked.Read(ref _next);
        long start = Math.Max(Math.Max(0, since), end - _ring.Length);
        var result = new List<FlowRecord>((int)Math.Max(0, end - start));
        for (long i = start; i < end; i++)
        {
            int index = (int)(i % _ring.Length);
            if (Volatile.Read(ref _sequences[index]) == i + 1 && Volatile.Read(ref _ring[index]) is { } record
                && Volatile.Read(ref _sequences[index]) == i + 1)
            {
                result.Add(record with { Sequence = i + 1 });
            }
        }

        return result;
    }
}
