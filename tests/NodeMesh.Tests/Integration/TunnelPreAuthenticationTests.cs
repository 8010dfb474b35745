using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Tests.Identity;
using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// What a host that has not authenticated can make the tunnel listener (15008) do: nothing fetched for the
/// certificate it presents, no slot held beyond its share, and no delay for the node's real peers.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class TunnelPreAuthenticationTests(ITestOutputHelper output)
{
    private const int EchoPort = 7000;

    [Fact]
    public async Task UntrustedClientCertificateWithFetchUrls_IsRefused_NothingIsFetched_AndFlowsAreNotDelayed()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Node target = mesh.Node(2);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);

        // The URLs point at 127.0.0.1 inside node2's namespace, where its agent would connect to fetch them.
        await using var trap = new FetchTrap(await target.InNamespaceAsync(FetchTrap.ListenOnLoopback));
        using X509Certificate2 untrusted = UntrustedCertificates.WithFetchUrls("spiffe://cluster.local/ns/nodemesh-system/sa/node.node1", trap.Url);

        Task<string>[] attacks = Enumerable.Range(0, 16).Select(async _ =>
        {
            Socket socket = await mesh.Ext.ConnectAsync(target.EndPoint(15008));
            return await UntrustedCertificates.PresentAsync(socket, untrusted, TimeSpan.FromSeconds(20));
        }).ToArray();

        await Task.Delay(100);
        var watch = Stopwatch.StartNew();
        ProbeResult probe = await mesh.Pod(1, 1).ProbeAsync(echo.EndPoint, "unrelated flow", TimeSpan.FromSeconds(10));
        watch.Stop();

        string[] outcomes = await Task.WhenAll(attacks);
        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "unrelated flow" }, mesh.Explain($"cross-node flow during the attack: {probe}"));
        Assert.All(outcomes, o => Assert.True(o is "refused" or "closed", mesh.Explain($"an untrusted client certificate got: {o}")));
        Assert.True(trap.Connections == 0, mesh.Explain($"the agent connected {trap.Connections} times to the URLs in an untrusted certificate"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), mesh.Explain($"a cross-node flow took {watch.Elapsed.TotalMilliseconds:0} ms during the attack"));
        Assert.Contains("rejected", mesh.Agent(2).Output, StringComparison.Ordinal);

        // Sixteen rejections within seconds are one log line (the rest are counted), not sixteen.
        int lines = mesh.Agent(2).Output.Split('\n').Count(l => l.Contains("rejected: ", StringComparison.Ordinal) && l.Contains("tunnel from", StringComparison.Ordinal));
        Assert.True(lines is >= 1 and <= 2, mesh.Agent(2).Explain($"{lines} rejection lines for 16 rejected handshakes"));

        // Each is counted by why: a certificate of another CA is "untrusted" (those shed before the handshake are not handshakes).
        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.WaitForAsync(mesh, 2, "/metrics",
            s => AgentMetrics.Value(s, "nodemesh_tunnel_handshake_failures_total", Untrusted) >= 1, prefix: "nodemesh_tunnel");
        double failures = scrape.Where(s => s.Name == "nodemesh_tunnel_handshake_failures_total").Sum(s => s.Value);
        Assert.True(failures <= 16 && AgentMetrics.Value(scrape, "nodemesh_tunnel_handshake_failures_total", Untrusted) == failures,
            AgentMetrics.Describe(scrape, "nodemesh_tunnel"));
    }

    private static readonly Dictionary<string, string> Untrusted = new() { ["direction"] = "inbound", ["reason"] = "untrusted" };

    [Fact]
    public async Task AThousandIdleConnections_AreShedAtOnce_WhileCrossNodeFlowsKeepWorking()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Node target = mesh.Node(2);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);

        var idle = new List<Socket>();
        int resetAtConnect = 0;
        for (int i = 0; i < 1000; i += 50)
        {
            Socket?[] opened = await Task.WhenAll(Enumerable.Range(0, 50).Select(async _ =>
            {
                try
                {
                    return await mesh.Ext.ConnectAsync(target.EndPoint(15008));
                }
                catch (SocketException)
                {
                    // Shed so fast that the reset beat the connect's completion.
                    Interlocked.Increment(ref resetAtConnect);
                    return null;
                }
            }));
            idle.AddRange(opened.OfType<Socket>());
        }

        var watch = Stopwatch.StartNew();
        ProbeResult probe = await mesh.Pod(1, 1).ProbeAsync(echo.EndPoint, "behind 1000 idle", TimeSpan.FromSeconds(10));
        watch.Stop();
        Assert.True(probe is { Outcome: ProbeOutcome.Answered, Answer: "behind 1000 idle" }, mesh.Explain($"cross-node flow behind 1,000 idle connections: {probe}"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), mesh.Explain($"a cross-node flow took {watch.Elapsed.TotalMilliseconds:0} ms behind 1,000 idle connections"));

        // Everything beyond the per-address share of pending handshakes was closed at once, not left to time out.
        int closed = resetAtConnect + await CaPreAuthenticationTests.CountClosedAsync(idle, TimeSpan.FromSeconds(1));
        Assert.True(closed >= 1000 - 64, mesh.Explain($"only {closed} of 1,000 idle connections to the tunnel port were closed at once"));
        Assert.Contains("address-limit", mesh.Agent(2).Output, StringComparison.Ordinal);

        // The ones that were let in wait for the handshake timeout, then go too.
        int closedLater = resetAtConnect + await CaPreAuthenticationTests.CountClosedAsync(idle, TimeSpan.FromSeconds(8));
        Assert.True(closedLater == 1000, mesh.Explain($"{1000 - closedLater} idle connections were still open after the handshake timeout"));
        Assert.True(mesh.Agent(2).IsRunning, mesh.Explain("node2's agent died"));
    }
}
