namespace NodeMesh.Telemetry;

/// <summary>
/// The labels of one series of the Istio TCP metrics (<c>istio_tcp_*</c>), as Istio's dashboards read them.
/// <see cref="LocalWorkload"/> is not exported: it is the workload of this node the series speaks for (the
/// source for <c>reporter=source</c>, the destination for <c>reporter=destination</c>), so the series can be
/// dropped when that workload is removed.
/// </summary>
internal readonly record struct TcpSeriesLabels(
    string Reporter,
    string SourceWorkload,
    string SourceNamespace,
    string SourcePrincipal,
    string DestinationWorkload,
    string DestinationNamespace,
    string DestinationPrincipal,
    string SecurityPolicy,
    string LocalWorkload)
{
    public const string Unknown = "unknown";

    /// <summary>
    /// The series a flow is counted in, decided from what the agent knows of it: each agent reports the side it
    /// serves (<c>source</c> for a flow leaving one of its workloads, <c>destination</c> for one arriving at one);
    /// a flow between two workloads of this node is reported from both sides.
    /// </summary>
    /// <param name="direction"><c>outbound</c> or <c>inbound</c>.</param>
    /// <param name="path"><c>tunnel</c>, <c>local</c>, <c>passthrough</c> or <c>plaintext</c>. A flow on the
    /// tunnel path is <c>mutual_tls</c> (also when it was refused at the far end: it was asked for over mTLS).</param>
    public static TcpSeriesLabels[] For(string direction, string path, string? sourceWorkload, string? sourceIdentity,
        string? destinationWorkload, string? destinationIdentity)
    {
        string security = path == "tunnel" ? "mutual_tls" : "none";
        TcpSeriesLabels Make(string reporter, string? local) => new(
            reporter,
            sourceWorkload ?? Unknown, NamespaceOf(sourceIdentity), sourceIdentity ?? Unknown,
            destinationWorkload ?? Unknown, NamespaceOf(destinationIdentity), destinationIdentity ?? Unknown,
            security, local ?? "");

        return (direction, path) switch
        {
            ("outbound", "local") => [Make("source", sourceWorkload), Make("destination", destinationWorkload)],
            ("outbound", _) => [Make("source", sourceWorkload)],
            _ => [Make("destination", destinationWorkload)],
        };
    }

    /// <summary>The Kubernetes-style namespace of a SPIFFE identity (<c>spiffe://td/ns/NS/sa/SA</c>), or unknown.</summary>
    public static string NamespaceOf(string? identity)
    {
        if (identity is null)
        {
            return Unknown;
        }

        int ns = identity.IndexOf("/ns/", StringComparison.Ordinal);
        if (ns < 0)
        {
            return Unknown;
        }

        int start = ns + 4;
        int end = identity.IndexOf('/', start);
        return end > start ? identity[start..end] : end < 0 && start < identity.Length ? identity[start..] : Unknown;
    }
}
