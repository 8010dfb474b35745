using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace NodeMesh.Telemetry;

/// <summary>What <see cref="TcpMetrics"/> reads of a flow while it runs.</summary>
internal interface ITcpTransfer
{
    /// <summary>Bytes from the destination to the source so far (Istio's "sent": the response).</summary>
    long BytesToSource { get; }

    /// <summary>Bytes from the source to the destination so far (Istio's "received": the request).</summary>
    long BytesToDestination { get; }
}

/// <summary>
/// The Istio TCP metrics: <c>istio_tcp_connections_opened_total</c>, <c>istio_tcp_connections_closed_total</c>,
/// <c>istio_tcp_sent_bytes_total</c> and <c>istio_tcp_received_bytes_total</c>. They are observed, not pushed:
/// each collection sums the bytes of flows that ended and the running counts of the flows still open, so a
/// long flow's bytes show while it runs. Series belong to a local workload and are dropped with it (an
/// observable instrument exports only the series its callback reports).
/// </summary>
internal sealed class TcpMetrics
{
    public const string NoFlags = "-";

    private readonly ConcurrentDictionary<TcpSeriesLabels, Series> _series = new();

    public TcpMetrics(Meter meter)
    {
        meter.CreateObservableCounter("istio_tcp_connections_opened_total", () => Observe(static (s, into) => s.AddOpened(into)),
            description: "TCP connections opened, by source and destination workload.");
        meter.CreateObservableCounter("istio_tcp_connections_closed_total", () => Observe(static (s, into) => s.AddClosed(into)),
            description: "TCP connections closed, by source and destination workload and response_flags.");
        meter.CreateObservableCounter("istio_tcp_sent_bytes_total", () => Observe(static (s, into) => s.AddSent(into)), unit: "By",
            description: "Bytes sent in response (destination to source), counted while connections are open.");
        meter.CreateObservableCounter("istio_tcp_received_bytes_total", () => Observe(static (s, into) => s.AddReceived(into)), unit: "By",
            description: "Bytes received in request (source to destination), counted while connections are open.");
    }

    /// <summary>Series currently kept (for tests and status).</summary>
    public int SeriesCount => _series.Count;

    /// <summary>A flow starts carrying bytes: it counts as opened, and its bytes are read from now on.</summary>
    public TcpTally Opened(TcpSeriesLabels[] labels, ITcpTransfer transfer)
    {
        var series = new Series[labels.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            series[i] = _series.GetOrAdd(labels[i], static l => new Series(l));
            series[i].Open(transfer);
        }

        return new TcpTally(series, transfer);
    }

    /// <summary>The flow has ended with <paramref name="responseFlags"/>; its final bytes move to the ended totals.</summary>
    public static void Closed(TcpTally tally, string responseFlags)
    {
        foreach (Series series in tally.Series)
        {
            series.Close(tally.Transfer, responseFlags);
        }
    }

    /// <summary>A flow that ended without carrying anything (refused or denied): opened and closed at once.</summary>
    public void OpenedAndClosed(TcpSeriesLabels[] labels, string responseFlags) =>
        Closed(Opened(labels, NothingCarried.Instance), responseFlags);

    /// <summary>The workload is gone: its series are no longer exported.</summary>
    public void DropWorkload(string name)
    {
        foreach (TcpSeriesLabels key in _series.Keys)
        {
            if (key.LocalWorkload == name)
            {
                _series.TryRemove(key, out _);
            }
        }
    }

    private List<Measurement<long>> Observe(Action<Series, List<Measurement<long>>> measure)
    {
        var measurements = new List<Measurement<long>>(_series.Count);
        foreach (Series series in _series.Values)
        {
            measure(series, measurements);
        }

        return measurements;
    }

    /// <summary>One flow's place in its series (two for a flow between workloads of this node).</summary>
    internal sealed class TcpTally(Series[] series, ITcpTransfer transfer)
    {
        internal Series[] Series { get; } = series;

        internal ITcpTransfer Transfer { get; } = transfer;
    }

    internal sealed class Series(TcpSeriesLabels labels)
    {
        private readonly Lock _gate = new();
        private readonly List<ITcpTransfer> _live = [];
        private readonly Dictionary<string, long> _closed = new(StringComparer.Ordinal);
        private long _opened;
        private long _sentEnded;
        private long _receivedEnded;

        public void Open(ITcpTransfer transfer)
        {
            lock (_gate)
            {
                _opened++;
                _live.Add(transfer);
            }
        }

        public void Close(ITcpTransfer transfer, string flags)
        {
            lock (_gate)
            {
                // Under the gate the observers take: a flow's bytes are in the live sum or the ended totals, never both.
                if (_live.Remove(transfer))
                {
                    _sentEnded += transfer.BytesToSource;
                    _receivedEnded += transfer.BytesToDestination;
                }

                _closed[flags] = _closed.GetValueOrDefault(flags) + 1;
            }
        }

        public void AddOpened(List<Measurement<long>> into)
        {
            lock (_gate)
            {
                into.Add(new Measurement<long>(_opened, Tags(NoFlags)));
            }
        }

        public void AddClosed(List<Measurement<long>> into)
        {
            lock (_gate)
            {
                foreach ((string flags, long count) in _closed)
                {
                    into.Add(new Measurement<long>(count, Tags(flags)));
                }
            }
        }

        public void AddSent(List<Measurement<long>> into) => AddBytes(into, toSource: true);

        public void AddReceived(List<Measurement<long>> into) => AddBytes(into, toSource: false);

        /// <summary>Ended flows' total plus the running counts of the open ones, read under the gate their ends take.</summary>
        private void AddBytes(List<Measurement<long>> into, bool toSource)
        {
            lock (_gate)
            {
                long total = toSource ? _sentEnded : _receivedEnded;
                foreach (ITcpTransfer transfer in _live)
                {
                    total += toSource ? transfer.BytesToSource : transfer.BytesToDestination;
                }

                into.Add(new Measurement<long>(total, Tags(NoFlags)));
            }
        }

        private TagList Tags(string flags) => new()
        {
            { "reporter", labels.Reporter },
            { "source_workload", labels.SourceWorkload },
            { "source_workload_namespace", labels.SourceNamespace },
            { "source_principal", labels.SourcePrincipal },
            { "destination_workload", labels.DestinationWorkload },
            { "destination_workload_namespace", labels.DestinationNamespace },
            { "destination_principal", labels.DestinationPrincipal },
            { "connection_security_policy", labels.SecurityPolicy },
            { "response_flags", flags },
        };
    }

    private sealed class NothingCarried : ITcpTransfer
    {
        public static readonly NothingCarried Instance = new();

        public long BytesToSource => 0;

        public long BytesToDestination => 0;
    }
}
