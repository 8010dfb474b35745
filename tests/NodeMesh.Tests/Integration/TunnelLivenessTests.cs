using System.Diagnostics;
using NodeMesh.Config;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// A peer that vanishes while a write to it is blocked: the tunnel's liveness does not depend on the writer, so
/// the loss is noticed within the keepalive timeout, new flows fail fast, and flows work again when it returns.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class TunnelLivenessTests(ITestOutputHelper output)
{
    private const int SinkPort = 7100;
    private const int EchoPort = 7101;
    private static readonly TunnelConfig FastKeepalive = new() { KeepaliveInterval = TimeSpan.FromSeconds(1), KeepaliveTimeout = TimeSpan.FromSeconds(3), ConnectTimeout = TimeSpan.FromSeconds(2) };

    [Fact]
    public async Task LinkCutMidUpload_TunnelIsDeclaredLostWithinSeconds_NewFlowsFailFast_AndWorkAgainWhenTheLinkReturns()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        foreach (Node node in mesh.Nodes)
        {
            await mesh.StartAgentAsync(node, s => s.Tunnel = FastKeepalive with { });
        }

        Pod client = mesh.Pod(1, 1);
        await mesh.Pod(2, 1).StartTcpServerAsync(SinkPort, ServerMode.Sink);
        TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(EchoPort, ServerMode.Echo);

        // A bulk upload fills every buffer on the way, so the sending agent's tunnel writer is blocked when the link goes.
        using var upload = await client.ConnectAsync(mesh.Pod(2, 1).EndPoint(SinkPort));
        byte[] chunk = TestData.RandomBytes(1024 * 1024);
        var cut = new TaskCompletionSource<Stopwatch>(TaskCreationOptions.RunContinuationsAsynchronously);
        LinkFault? partition = null;
        Task<StreamResult> uploading = upload.SendAllAsync(chunk, TimeSpan.FromSeconds(60), times: 100_000, onProgress: async sent =>
        {
            if (sent >= 64L * 1024 * 1024 && partition is null)
            {
                partition = await LinkFault.DropTcpPortAsync(mesh.Node(2), 15008);
                cut.TrySetResult(Stopwatch.StartNew());
            }
        });
        Stopwatch sinceCut = await cut.Task.WaitAsync(TimeSpan.FromSeconds(60));

        // The upload's flow is reset once the tunnel is declared lost (keepalive timeout 3 s; allow for a busy machine).
        StreamResult uploaded = await uploading;
        TimeSpan declaredLost = sinceCut.Elapsed;
        output.WriteLine($"upload ended {declaredLost.TotalSeconds:F1} s after the cut: {uploaded}");
        Assert.True(uploaded.End == StreamEnd.Reset, mesh.Explain($"the upload over the lost tunnel must end in a reset, got {uploaded}"));
        Assert.True(declaredLost < TimeSpan.FromSeconds(10), mesh.Explain($"the lost tunnel was noticed only after {declaredLost.TotalSeconds:F1} s"));
        Assert.True(await mesh.Agent(1).WaitForOutputAsync("aborted (KeepaliveTimeout)"), mesh.Explain("node1 must log the lost tunnel as a keepalive timeout"));

        // New flows while the link is down fail within twice the connect timeout.
        var watch = Stopwatch.StartNew();
        ProbeResult during = await client.ProbeAsync(echo.EndPoint, "during", TimeSpan.FromSeconds(15));
        TimeSpan failedAfter = watch.Elapsed;
        Assert.True(during.Outcome is ProbeOutcome.Refused or ProbeOutcome.Reset, mesh.Explain($"a new flow during the cut must fail: {during}"));
        Assert.True(failedAfter < 2 * FastKeepalive.ConnectTimeout + TimeSpan.FromSeconds(1),
            mesh.Explain($"a new flow during the cut took {failedAfter.TotalSeconds:F1} s to fail"));

        await partition!.RestoreAsync();
        ProbeResult after = default!;
        for (int attempt = 0; attempt < 10; attempt++)
        {
            // The pool may still be in its short backoff from the failed dial.
            after = await client.ProbeAsync(echo.EndPoint, "after", TimeSpan.FromSeconds(10));
            if (after.Outcome == ProbeOutcome.Answered)
            {
                break;
            }

            await Task.Delay(500);
        }

        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "after" }, mesh.Explain($"once the link is back, flows must work again: {after}"));
    }
}
