using System.Globalization;
using System.Text;
using NodeMesh.App;
using NodeMesh.Contracts;

namespace NodeMesh.Cli;

/// <summary><c>nodemesh status</c>: this node, its peers and tunnels, certificates, workloads, flows and memory.</summary>
internal static class StatusCommand
{
    public static async Task<int> RunAsync(Options options)
    {
        OutputFormat format = Output.Format(options);
        ApiResponse response = await AgentSocket.SendAsync(options, new ApiRequest { Command = "status" });
        AgentStatus status = response.Status ?? throw new IOException("the agent's status reply has no status");
        Console.Write(Render(status, format, DateTimeOffset.UtcNow));
        return 0;
    }

    /// <summary>"etcd, synced at revision 42 (current 0.3 s ago): 3 nodes, 5 remote workloads".</summary>
    internal static string DescribeRegistry(RegistryStatus r, DateTimeOffset now)
    {
        string contents = $"{Count(r.Nodes, "node")}, {Count(r.RemoteWorkloads, "remote workload")}";
        if (r.Source == "static")
        {
            return $"static (config file): {contents}";
        }

        string lag = r.LagSeconds is { } seconds ? string.Create(CultureInfo.InvariantCulture, $" (current {seconds:F1} s ago)") : "";
        string state = r.State switch
        {
            "synced" => $"synced at revision {r.Revision}{lag}",
            "disconnected" => $"DISCONNECTED{(r.DisconnectedSince is { } since ? $" for {Approximately(now - since)}" : "")}, serving revision {r.Revision}{lag}",
            _ => "syncing (not listed yet)",
        };
        string published = r.Published == false ? "; this node NOT published" : "";
        string refused = r.EntriesRefused > 0 ? $"; {r.EntriesRefused} malformed entries refused" : "";
        string error = r.LastError is null ? "" : $"; last error: {r.LastError}";
        return $"{r.Source}, {state}: {contents}{published}{refused}{error}";
    }

    public static string Render(AgentStatus status, OutputFormat format, DateTimeOffset now)
    {
        if (Output.Serialized(status, ApiJsonContext.Default.AgentStatus, format) is { } serialized)
        {
            return serialized;
        }

        bool wide = Output.IsWide(format);
        var text = new StringBuilder();
        string uptime = status.StartedAt is { } started ? $", up {Approximately(now - started)}" : "";
        Line(text, "Node", $"{status.Node} (nodemesh {status.Version}){uptime}");
        Line(text, "Transports", string.Join(", ", status.Transports));
        if (status.Registry is { } registry)
        {
            Line(text, "Registry", DescribeRegistry(registry, now));
        }

        Line(text, "Listener", status.Listener is { } l ? $"{l.Address}: {Count(l.Connections, "connection")} from peers, {Count(l.Streams, "stream")}" : "not listening");
        Line(text, "Tunnels", $"{Count(status.TunnelConnections, "connection")} open, {status.TunnelConnectionsOpened} dialled since the start");
        Line(text, "Flows", $"{status.ActiveFlows} active, {status.FlowsRecorded} ended or refused since the start: {status.FlowsRefused} refused, " +
            $"{status.FlowsDenied} denied by policy ({status.FlowsDryRunDenied} dry-run); {Count(status.Policies, "policy", "policies")}");
        Line(text, "Memory", string.Create(CultureInfo.InvariantCulture,
            $"{status.ResidentBytes / 1048576.0:F1} MiB resident, managed heap {status.ManagedHeapBytes / 1048576.0:F1} MiB ({status.ManagedCommittedBytes / 1048576.0:F1} MiB committed)"));
        if (status.ApiCallersRefused > 0)
        {
            Line(text, "API", $"{status.ApiCallersRefused} callers refused (not root, not in api.group)");
        }

        text.Append('\n').Append("PEERS\n");
        if (status.Peers.Count == 0)
        {
            text.Append("(no peer nodes configured)\n");
        }
        else
        {
            var peers = new Table(new Column("NODE"), new Column("ADDRESS"), new Column("STATE"), new Column("CONNECTIONS", AlignRight: true),
                new Column("STREAMS", AlignRight: true), new Column("SOURCE-IDENTITY", WideOnly: true), new Column("LAST-ERROR"));
            foreach (PeerStatus peer in status.Peers)
            {
                string error = peer.LastError is null ? "-" : peer.RetryAt is { } retry && retry > now ? $"{peer.LastError} (retry in {Approximately(retry - now)})" : peer.LastError;
                peers.Add(peer.Node, peer.Address, peer.State, Number(peer.Connections), Number(peer.Streams), wide ? "(all)" : "", error);
                if (wide)
                {
                    foreach (TunnelPeerState tunnel in peer.Tunnels)
                    {
                        peers.Add("", "", tunnel.Connections > 0 ? "connected" : tunnel.Dialling ? "dialling" : tunnel.RetryAt is not null ? "backoff" : tunnel.LastError is not null ? "failing" : "idle",
                            Number(tunnel.Connections), Number(tunnel.Streams), tunnel.SourceIdentity, tunnel.LastError ?? "-");
                    }
                }
            }

            text.Append(peers.Render(wide));
        }

        if (wide && status.Listener is { Accepted.Count: > 0 } listener)
        {
            text.Append('\n').Append("ACCEPTED TUNNELS\n");
            var accepted = new Table(new Column("PEER-IDENTITY"), new Column("LOCAL-IDENTITY"), new Column("STREAMS", AlignRight: true));
            foreach (TunnelConnectionState c in listener.Accepted)
            {
                accepted.Add(c.PeerIdentity, c.LocalIdentity, Number(c.Streams));
            }

            text.Append(accepted.Render(wide));
        }

        text.Append('\n').Append("CERTIFICATES\n");
        var certificates = new Table(new Column("IDENTITY"), new Column("KIND"), new Column("STATE"), new Column("EXPIRES"));
        foreach (CertificateInfo certificate in status.Certificates)
        {
            (string state, string expires) = certificate.NotAfter switch
            {
                { } notAfter when notAfter > now => (certificate.Error is null ? "valid" : $"valid (renewal failing: {certificate.Error})",
                    $"{notAfter.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}Z (in {Approximately(notAfter - now)})"),
                { } expired => ($"expired{(certificate.Error is null ? "" : ": " + certificate.Error)}", $"{Approximately(now - expired)} ago"),
                null => (certificate.Error is null ? "pending" : "unavailable: " + certificate.Error, "-"),
            };
            certificates.Add(certificate.Identity, certificate.Kind ?? "", state, expires);
        }

        text.Append(certificates.Render(wide));
        text.Append('\n').Append("WORKLOADS\n");
        text.Append(status.Workloads.Count == 0 ? "(no local workloads)\n" : WorkloadCommands.Table(status.Workloads).Render(wide));
        return text.ToString();
    }

    private static void Line(StringBuilder text, string label, string value) => text.Append($"{label + ":",-12}").Append(value).Append('\n');

    private static string Number(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Count(int n, string one, string? many = null) => n == 1 ? $"1 {one}" : $"{n} {many ?? one + "s"}";

    /// <summary>A span in its two largest units ("3h", "2d4h", "45m10s"), as people read an expiry.</summary>
    internal static string Approximately(TimeSpan span)
    {
        if (span < TimeSpan.FromSeconds(1))
        {
            return "0s";
        }

        (long Amount, string Unit)[] parts = [(span.Days, "d"), (span.Hours, "h"), (span.Minutes, "m"), (span.Seconds, "s")];
        int first = Array.FindIndex(parts, p => p.Amount > 0);
        return string.Concat(parts.Skip(first).Take(2).Where(p => p.Amount > 0).Select(p => p.Amount.ToString(CultureInfo.InvariantCulture) + p.Unit));
    }
}
