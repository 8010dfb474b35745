using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>What crosses the wire between nodes: only TLS 1.3 to the tunnel port, never a pod's plaintext.</summary>
[Collection(NetnsCollection.Name)]
public sealed class LinkEncryptionTests(ITestOutputHelper output)
{
    private const int TunnelPort = 15008;

    [Fact]
    public async Task CrossNode_Marker_NeverCrossesTheLinkInPlaintext_WhileTls13RecordsDo()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await mesh.StartAgentsAsync();
        Pod client = mesh.Pod(1, 1), server = mesh.Pod(2, 1);
        TcpTestServer http = await server.StartTcpServerAsync(8080, ServerMode.Http);
        TcpTestServer external = await mesh.Ext.StartTcpServerAsync(9000, ServerMode.Echo);
        string marker = TestData.Marker("mesh");
        string control = TestData.Marker("ext");

        // Captures start before the first flow, so the tunnel connection is seen from its first byte.
        LinkCapture link1 = await mesh.CaptureAsync(mesh.Node(1));
        LinkCapture link2 = await mesh.CaptureAsync(mesh.Node(2));
        CommandResult curl = await client.RunAsync("curl", "-sS", "--noproxy", "*", "--max-time", "10",
            "-H", $"X-Marker: {marker}", "--data-binary", marker, $"http://{http.EndPoint}/{marker}");
        // Control: the same kind of marker sent to a host outside the mesh is plaintext by design, so the
        // capture demonstrably sees plaintext when there is some.
        ProbeResult toExt = await client.ProbeAsync(external.EndPoint, control);
        CapturedTraffic wire1 = await link1.StopAsync();
        CapturedTraffic wire2 = await link2.StopAsync();

        Assert.True(curl.Succeeded, mesh.Explain(curl.ToString()));
        (ServerConnection request, _) = await http.SingleResultAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(marker, request.Request, StringComparison.Ordinal);
        Assert.True(toExt.Outcome == ProbeOutcome.Answered, mesh.Explain($"passthrough to ext: {toExt}"));
        Assert.True(wire1.Contains(control), $"the control marker sent to ext in plaintext is missing from the {wire1}: the capture is not seeing the link");

        foreach (CapturedTraffic wire in new[] { wire1, wire2 })
        {
            Assert.False(wire.Contains(marker), mesh.Explain($"the marker sent pod to pod appears in plaintext in the {wire}"));
            TcpSegment[] podToPod = wire.PayloadBetween("10.240.").ToArray();
            Assert.True(podToPod.Length == 0, $"pod-to-pod payload crossed the link outside the tunnel ({wire}): " +
                string.Join(", ", podToPod.Take(5).Select(s => $"{s.Source} -> {s.Destination} {s.Payload.Length} bytes")));

            TlsObservation tls = wire.Tls(TunnelPort);
            output.WriteLine($"{wire}: port {TunnelPort}: {wire.TcpPackets(TunnelPort)} packets; TLS: {tls}");
            Assert.True(tls.ConnectionsFromStart >= 1 && tls.ClientHellos == tls.ConnectionsFromStart && tls.Tls13ServerHellos == tls.ConnectionsFromStart,
                mesh.Explain($"expected every tunnel connection on the link to open with a TLS 1.3 handshake; {wire}: {tls}"));
            Assert.True(tls.ApplicationDataRecords > 0, $"no TLS application-data records on port {TunnelPort} in the {wire}: {tls}");
            Assert.True(tls.Problems.Count == 0, $"the traffic on port {TunnelPort} is not all TLS: {tls}");
        }
    }
}
