using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;

namespace NodeMesh.Bench;

/// <summary>What one measurement found: its figure and the process's memory while and after it ran.</summary>
internal sealed record Measurement(string Scenario, double Value, double PeakRssMiB, double LiveManagedMiB, double AllocatedPerUnit)
{
    public string ToLine(string transport) => string.Create(CultureInfo.InvariantCulture,
        $"result transport={transport} scenario={Scenario} value={Value:F3} peak_rss_mib={PeakRssMiB:F1} managed_mib={LiveManagedMiB:F2} alloc_per_unit={AllocatedPerUnit:F0}");
}

/// <summary>
/// The three measurements, run against one transport over one TLS connection: bulk throughput on one stream and
/// on eight at once (client to server, 64 KiB writes as the agent's pumps make them), and 64-byte request/response
/// round trips on one stream. Each first runs for a warm-up time (tiered JIT, TCP window), then is counted.
/// </summary>
internal sealed class Measurements(BenchTransport transport, TimeSpan warmup, TimeSpan duration)
{
    /// <summary>What a pump reads into its 64 KiB buffer after the room it keeps for a frame header.</summary>
    private const int BulkChunk = (64 * 1024) - 12;

    private const int MessageSize = 64;

    public async Task<Measurement> BulkAsync(string scenario, int streams)
    {
        var flows = new List<(BenchFlow Client, BenchFlow Server)>();
        for (int i = 0; i < streams; i++)
        {
            flows.Add(await transport.OpenAsync());
        }

        var received = new long[1];
        using var stop = new CancellationTokenSource();
        byte[] chunk = new byte[BulkChunk];
        Random.Shared.NextBytes(chunk);
        Task[] running = flows.SelectMany(f => new[] { SendUntilAsync(f.Client, chunk, stop.Token), ReceiveAllAsync(f.Server, received) }).ToArray();

        (double seconds, long bytes, double peak, long allocated) = await CountAsync(() => Volatile.Read(ref received[0]));
        await stop.CancelAsync();
        await Task.WhenAll(running);
        await CloseAsync(flows);
        return new Measurement(scenario, bytes * 8 / seconds / 1e9, peak, ProcessMemory.LiveManagedMiB(), allocated / (bytes / (1024.0 * 1024.0)));
    }

    public async Task<Measurement> RoundTripsAsync()
    {
        (BenchFlow client, BenchFlow server) = await transport.OpenAsync();
        var done = new long[1];
        using var stop = new CancellationTokenSource();
        Task echo = EchoAsync(server);
        Task asking = AskUntilAsync(client, done, stop.Token);

        (double seconds, long trips, double peak, long allocated) = await CountAsync(() => Volatile.Read(ref done[0]));
        await stop.CancelAsync();
        await Task.WhenAll(asking, echo);
        await CloseAsync([(client, server)]);
        return new Measurement("rr", trips / seconds, peak, ProcessMemory.LiveManagedMiB(), allocated / (double)trips);
    }

    /// <summary>Lets the load run through the warm-up, then counts for the duration: units per second, peak RSS, bytes allocated.</summary>
    private async Task<(double Seconds, long Units, double PeakRssMiB, long Allocated)> CountAsync(Func<long> counter)
    {
        await Task.Delay(warmup);
        ProcessMemory.ResetPeak();
        long allocatedBefore = GC.GetTotalAllocatedBytes();
        long before = counter();
        var clock = Stopwatch.StartNew();
        await Task.Delay(duration);
        long units = counter() - before;
        double seconds = clock.Elapsed.TotalSeconds;
        long allocated = GC.GetTotalAllocatedBytes() - allocatedBefore;
        return (seconds, units, ProcessMemory.PeakRssMiB(), allocated);
    }

    private static async Task SendUntilAsync(BenchFlow flow, byte[] chunk, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await flow.WriteAsync(chunk);
        }

        await flow.CompleteWritesAsync();
        await DrainAsync(flow, null);
    }

    private static async Task ReceiveAllAsync(BenchFlow flow, long[] received)
    {
        await DrainAsync(flow, received);
        await flow.CompleteWritesAsync();
    }

    private static async Task DrainAsync(BenchFlow flow, long[]? received)
    {
        while (true)
        {
            ReadResult result = await flow.Input.ReadAsync();
            int length = (int)result.Buffer.Length;
            flow.Input.AdvanceTo(result.Buffer.End);
            if (length > 0)
            {
                await flow.ConsumedAsync(length);
                if (received is not null)
                {
                    Interlocked.Add(ref received[0], length);
                }
            }

            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    private static async Task AskUntilAsync(BenchFlow flow, long[] done, CancellationToken stop)
    {
        byte[] request = new byte[MessageSize];
        while (!stop.IsCancellationRequested)
        {
            await flow.WriteAsync(request);
            if (!await ReadMessageAsync(flow))
            {
                throw new IOException("the echo side ended early");
            }

            Interlocked.Increment(ref done[0]);
        }

        await flow.CompleteWritesAsync();
        await DrainAsync(flow, null);
    }

    private static async Task EchoAsync(BenchFlow flow)
    {
        byte[] reply = new byte[MessageSize];
        while (await ReadMessageAsync(flow))
        {
            await flow.WriteAsync(reply);
        }

        await flow.CompleteWritesAsync();
    }

    /// <summary>Reads one message; false at the end of the stream.</summary>
    private static async ValueTask<bool> ReadMessageAsync(BenchFlow flow)
    {
        while (true)
        {
            ReadResult result = await flow.Input.ReadAsync();
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (buffer.Length >= MessageSize)
            {
                flow.Input.AdvanceTo(buffer.GetPosition(MessageSize));
                await flow.ConsumedAsync(MessageSize);
                return true;
            }

            if (result.IsCompleted)
            {
                flow.Input.AdvanceTo(buffer.End);
                return false;
            }

            flow.Input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static async Task CloseAsync(IEnumerable<(BenchFlow Client, BenchFlow Server)> flows)
    {
        foreach ((BenchFlow client, BenchFlow server) in flows)
        {
            await client.CloseAsync();
            await server.CloseAsync();
        }
    }
}
