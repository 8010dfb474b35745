using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using NodeMesh.App;
using NodeMesh.Contracts;

namespace NodeMesh.Cli;

/// <summary>
/// <c>nodemesh flows</c>: the agent's recent flows, filtered; with <c>--follow</c> it asks again every half second
/// for the flows after the last one it printed (the log's sequence number is the cursor), until Ctrl-C or SIGTERM.
/// JSON is one flow object per line (so that a followed stream is still one shape); YAML a sequence.
/// </summary>
internal static class FlowsCommand
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    private static readonly System.Text.Json.Serialization.Metadata.JsonTypeInfo<FlowRecord> FlowLine =
        new ApiJsonContext(new JsonSerializerOptions(Output.Readable.Options) { WriteIndented = false }).FlowRecord;

    /// <summary>Which flows to show.</summary>
    internal sealed record Filter(string? Workload, bool DeniedOnly, DateTimeOffset? EndedAfter)
    {
        public bool Matches(FlowRecord flow) =>
            (Workload is null || flow.SourceWorkload == Workload || flow.DestinationWorkload == Workload)
            && (!DeniedOnly || flow.Outcome == FlowOutcome.Denied)
            && (EndedAfter is null || flow.Ended >= EndedAfter);

        public static Filter From(Options options, DateTimeOffset now)
        {
            DateTimeOffset? after = null;
            if (options.Get("since") is { } since)
            {
                after = Duration.TryParse(since, out TimeSpan window, out string? error) ? now - window : throw new UsageException($"--since: {error}");
            }

            return new Filter(options.Get("workload"), options.Flag("denied"), after);
        }
    }

    public static async Task<int> RunAsync(Options options)
    {
        OutputFormat format = Output.Format(options);
        Filter filter = Filter.From(options, DateTimeOffset.UtcNow);
        ApiResponse response = await AgentSocket.SendAsync(options, new ApiRequest { Command = "flows" });
        List<FlowRecord> flows = [.. (response.Flows ?? []).Where(filter.Matches)];
        if (!options.Flag("follow"))
        {
            Console.Write(Render(flows, format, header: true));
            return 0;
        }

        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using PosixSignalRegistration terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        Console.Write(Render(flows, format, header: true));
        long cursor = response.FlowCursor ?? flows.Select(f => f.Sequence).DefaultIfEmpty(0).Max();
        try
        {
            while (true)
            {
                await Task.Delay(PollInterval, stop.Token);
                ApiResponse next = await AgentSocket.SendAsync(options, new ApiRequest { Command = "flows", Since = cursor }, stop.Token);
                List<FlowRecord> fresh = [.. (next.Flows ?? []).Where(f => f.Sequence > cursor)];
                cursor = Math.Max(cursor, next.FlowCursor ?? fresh.Select(f => f.Sequence).DefaultIfEmpty(cursor).Max());
                if (fresh.Where(filter.Matches).ToList() is { Count: > 0 } shown)
                {
                    Console.Write(Render(shown, format, header: false));
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return 0;
        }
        catch (IOException) when (stop.IsCancellationRequested)
        {
            return 0;
        }

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
    }

    /// <summary>
    /// The flows in <paramref name="format"/>; <paramref name="header"/> false for a later batch of a followed stream
    /// (no column headers, and YAML items continue the sequence).
    /// </summary>
    public static string Render(List<FlowRecord> flows, OutputFormat format, bool header) => format switch
    {
        // One compact object per line, whatever the indentation of the other commands: a stream that --follow extends.
        OutputFormat.Json => string.Concat(flows.Select(f => JsonSerializer.Serialize(f, FlowLine) + "\n")),
        OutputFormat.Yaml => flows.Count == 0 && header ? "[]\n" : YamlWriter.SequenceItems(JsonSerializer.Serialize(flows, ApiJsonContext.Default.ListFlowRecord)),
        _ => flows.Count == 0 && !header ? "" : Table(flows).Render(Output.IsWide(format), header),
    };

    internal static Table Table(IEnumerable<FlowRecord> flows)
    {
        var table = new Table(
            new Column("SEQ", WideOnly: true, AlignRight: true, MinWidth: 5),
            new Column("TIME", MinWidth: 8),
            new Column("DIR", MinWidth: 8),
            new Column("PATH", WideOnly: true, MinWidth: 11),
            new Column("SOURCE", MinWidth: 12),
            new Column("SOURCE-ADDRESS", WideOnly: true, MinWidth: 21),
            new Column("SOURCE-IDENTITY", MinWidth: 16),
            new Column("DESTINATION", MinWidth: 12),
            new Column("DESTINATION-ADDRESS", WideOnly: true, MinWidth: 21),
            new Column("DESTINATION-IDENTITY", MinWidth: 16),
            new Column("MTLS", MinWidth: 4),
            new Column("SENT", AlignRight: true, MinWidth: 8),
            new Column("RECEIVED", AlignRight: true),
            new Column("DURATION", AlignRight: true),
            new Column("RESULT"));
        foreach (FlowRecord f in flows)
        {
            table.Add(
                f.Sequence.ToString(CultureInfo.InvariantCulture),
                f.Ended.UtcDateTime.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                f.Direction,
                f.Path,
                f.SourceWorkload ?? f.Source,
                f.Source,
                ShortIdentity(f.SourceIdentity),
                f.DestinationWorkload ?? f.Destination,
                f.Destination,
                ShortIdentity(f.DestinationIdentity),
                f.Encrypted ? "yes" : "no",
                f.BytesSent.ToString(CultureInfo.InvariantCulture),
                f.BytesReceived.ToString(CultureInfo.InvariantCulture),
                Duration.Format(TimeSpan.FromMilliseconds(Math.Round(f.DurationMs))),
                f.Result);
        }

        return table;
    }

    /// <summary>"ns/shop/sa/api" for spiffe://cluster.local/ns/shop/sa/api: the trust domain is the same on every row.</summary>
    internal static string ShortIdentity(string? identity)
    {
        if (identity is null)
        {
            return "-";
        }

        int path = identity.StartsWith("spiffe://", StringComparison.Ordinal) ? identity.IndexOf('/', "spiffe://".Length) : -1;
        return path > 0 ? identity[(path + 1)..] : identity;
    }
}
