using System.Globalization;
using System.Text;

namespace NodeMesh.Bench;

/// <summary>What one measuring process reported (see <see cref="Measurement.ToLine"/>).</summary>
internal sealed record RunResult(string Transport, string Cipher, double ConnectedRssMiB, bool PeakReset, IReadOnlyDictionary<string, Measurement> Measurements)
{
    public static RunResult Parse(string transport, string output)
    {
        string cipher = "?";
        double connected = double.NaN;
        bool peakReset = false;
        var measurements = new Dictionary<string, Measurement>();
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            Dictionary<string, string> fields = line.Split(' ').Skip(1).Select(f => f.Split('=', 2)).Where(f => f.Length == 2).ToDictionary(f => f[0], f => f[1]);
            if (line.StartsWith("info ", StringComparison.Ordinal))
            {
                cipher = fields["cipher"];
                connected = Number(fields["rss_connected_mib"]);
                peakReset = fields["peak_reset"] == bool.TrueString;
            }
            else if (line.StartsWith("result ", StringComparison.Ordinal))
            {
                string scenario = fields["scenario"];
                measurements[scenario] = new Measurement(scenario, Number(fields["value"]), Number(fields["peak_rss_mib"]),
                    Number(fields["managed_mib"]), Number(fields["alloc_per_unit"]));
            }
        }

        if (measurements.Count != 3)
        {
            throw new BenchFailedException($"{transport}: the measuring process reported {measurements.Count} of 3 measurements: {output}");
        }

        return new RunResult(transport, cipher, connected, peakReset, measurements);
    }

    private static double Number(string text) => double.Parse(text, CultureInfo.InvariantCulture);
}

/// <summary>Medians (and ranges) over the runs, side by side, with the ratio own protocol / MultiplexingStream.</summary>
internal sealed class Report(IReadOnlyList<RunResult> results, int runs, double seconds)
{
    private static readonly (string Label, string Format, Func<RunResult, double> Value)[] Rows =
    [
        ("single stream (Gbit/s)", "F2", r => r.Measurements["single"].Value),
        ("8 streams, total (Gbit/s)", "F2", r => r.Measurements["eight"].Value),
        ("64 B request/response, 1 stream (round trips/s)", "F0", r => r.Measurements["rr"].Value),
        ("peak RSS during single stream (MiB)", "F1", r => r.Measurements["single"].PeakRssMiB),
        ("peak RSS during 8 streams (MiB)", "F1", r => r.Measurements["eight"].PeakRssMiB),
        ("peak RSS during request/response (MiB)", "F1", r => r.Measurements["rr"].PeakRssMiB),
        ("live managed heap after 8 streams (MiB)", "F2", r => r.Measurements["eight"].LiveManagedMiB),
        ("allocated per MiB moved, 8 streams (bytes)", "F0", r => r.Measurements["eight"].AllocatedPerUnit),
        ("allocated per round trip (bytes)", "F0", r => r.Measurements["rr"].AllocatedPerUnit),
    ];

    private const string Own = NodeMeshTransport.Id;
    private const string Mux = MultiplexingTransport.Id;

    public string ToText()
    {
        var text = new StringBuilder();
        text.AppendLine(Line("metric", "nodemesh protocol", "MultiplexingStream", "nodemesh/mux"));
        foreach ((string label, string cells, string mux, string ratio) in Table())
        {
            text.AppendLine(Line(label, cells, mux, ratio));
        }

        text.AppendLine();
        foreach (string note in Notes())
        {
            text.Append("  ").AppendLine(note);
        }

        return text.ToString();

        static string Line(string a, string b, string c, string d) => $"{a,-50} {b,22} {c,22} {d,13}";
    }

    public string ToMarkdown()
    {
        var text = new StringBuilder();
        text.AppendLine("| metric | nodemesh protocol | Nerdbank MultiplexingStream | nodemesh/mux |");
        text.AppendLine("|---|---:|---:|---:|");
        foreach ((string label, string own, string mux, string ratio) in Table())
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"| {label} | {own} | {mux} | {ratio} |");
        }

        text.AppendLine();
        foreach (string note in Notes())
        {
            text.Append("- ").AppendLine(note);
        }

        return text.ToString();
    }

    private IEnumerable<(string Label, string Own, string Mux, string Ratio)> Table()
    {
        foreach ((string label, string format, Func<RunResult, double> value) in Rows)
        {
            double[] own = Values(Own, value);
            double[] mux = Values(Mux, value);
            yield return (label, Cell(own, format), Cell(mux, format), (Median(own) / Median(mux)).ToString("F2", CultureInfo.InvariantCulture));
        }
    }

    private IEnumerable<string> Notes()
    {
        RunResult own = results.First(r => r.Transport == Own);
        RunResult mux = results.First(r => r.Transport == Mux);
        string[] faster = Rows.Take(3).Select(r => Median(Values(Own, r.Value)) >= Median(Values(Mux, r.Value)) ? Own : Mux).ToArray();
        int ownWins = faster.Count(f => f == Own);
        yield return $"Faster: {(ownWins >= 2 ? "the nodemesh protocol" : "MultiplexingStream")} on {Math.Max(ownWins, 3 - ownWins)} of the 3 rate figures (single {faster[0]}, 8 streams {faster[1]}, request/response {faster[2]}).";
        yield return string.Create(CultureInfo.InvariantCulture,
            $"In process, over loopback: one TLS 1.3 connection per transport (ECDSA P-256 mesh certificates, {own.Cipher} / {mux.Cipher}), client to server; 64 KiB writes; per-stream receive window 1 MiB on both (MultiplexingStream protocol 3, no window growth).");
        yield return string.Create(CultureInfo.InvariantCulture,
            $"Median of {runs} runs (range in brackets), {seconds} s counted per measurement after a warm-up; each transport in a fresh process per run, the order alternating; JIT-compiled (the agent ships Native AOT), the agent's gen0 budget and thread-pool spin setting.");
        yield return string.Create(CultureInfo.InvariantCulture,
            $"RSS is the whole bench process (runtime, JIT, both ends of the connection): {Median(Values(Own, r => r.ConnectedRssMiB)):F1} / {Median(Values(Mux, r => r.ConnectedRssMiB)):F1} MiB once connected; the peak is {(results.All(r => r.PeakReset) ? "reset before each measurement" : "the process's peak so far (this kernel refused to reset it)")}.");
        yield return "Absolute figures move with the machine's load; compare the two transports within one run (the ratio column).";
    }

    private double[] Values(string transport, Func<RunResult, double> value) => results.Where(r => r.Transport == transport).Select(value).ToArray();

    private static string Cell(double[] values, string format) =>
        values.Length == 1
            ? values[0].ToString(format, CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"{Median(values).ToString(format, CultureInfo.InvariantCulture)} ({values.Min().ToString(format, CultureInfo.InvariantCulture)}–{values.Max().ToString(format, CultureInfo.InvariantCulture)})");

    private static double Median(double[] values)
    {
        double[] sorted = values.Order().ToArray();
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
}
