using System.Net;
using System.Text.Json.Nodes;
using NodeMesh.Contracts;
using NodeMesh.Tests.Discovery;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The CNI shim chained after Debian's reference plug-ins (bridge with host-local addresses), run exactly as a container
/// runtime runs a network list: each plug-in an executable in the node's namespace, CNI_* variables, the configuration
/// on stdin, each ADD's result the next one's prevResult. The pods are real namespaces; the agents find each other on etcd.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class CniShimTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AfterAdd_APodsTrafficIsCapturedAndEncryptedBothWays_CheckPasses_AndAfterDelNothingIsLeft()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        await using EtcdServer etcd = await EtcdServer.StartClusterAsync(1, mesh.Ext);
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1), EtcdDiscoveryTests.OnEtcd(etcd));
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), EtcdDiscoveryTests.OnEtcd(etcd));
        var runtime = new CniRuntime(mesh, mesh.Node(1), CniRuntime.BridgeThenShim(mesh, mesh.Node(1), node1.SocketPath));

        // VERSION and STATUS as a 1.1 runtime asks them.
        CniResult version = await runtime.VersionAsync();
        Assert.True(version.Succeeded, version.ToString());
        Assert.Contains("1.0.0", version.Json!["supportedVersions"]!.AsArray().Select(v => v!.GetValue<string>()));
        CniResult status = await runtime.StatusAsync();
        Assert.True(status.Succeeded, status.ToString());

        (CniPod? pod, CniResult added) = await runtime.AddPodAsync("shop", "web-1");
        Assert.True(pod is not null, mesh.Explain($"ADD: {added}"));
        output.WriteLine($"ADD result: {added.Stdout.Trim()}");
        // The result is the bridge plug-in's, passed through: the pod's interface and address, in the list's version.
        Assert.Equal("1.0.0", added.Json!["cniVersion"]!.GetValue<string>());
        Assert.Contains(added.Json["interfaces"]!.AsArray(), i => i!["name"]!.GetValue<string>() == "eth0" && i["sandbox"]?.GetValue<string>() == pod.NetnsPath);
        Assert.StartsWith("10.240.1.", pod.Ip.ToString(), StringComparison.Ordinal);

        // Captured before ADD returned: the listing says so, with the identity of the pod's (default) service account.
        WorkloadInfo captured = Assert.Single(await node1.WorkloadListAsync(), w => w.Name == "web-1.shop");
        Assert.Equal(("cni", pod.Ip.ToString(), "spiffe://cluster.local/ns/shop/sa/default", pod.ContainerId), (captured.Source, captured.Ip, captured.Identity, captured.ContainerId));
        Assert.StartsWith("installed", captured.Capture, StringComparison.Ordinal);
        Assert.Contains("NODEMESH", await pod.IptablesSaveAsync(), StringComparison.Ordinal);

        // Out of the pod to node2's pod, and from node2's pod into it: both carried in the tunnel, nothing in plaintext on the wire.
        Pod remote = mesh.Pod(2, 1);
        TcpTestServer remoteEcho = await remote.StartTcpServerAsync(8080, ServerMode.Echo);
        TcpTestServer podEcho = await pod.StartTcpServerAsync(8080, ServerMode.Echo);
        await EtcdDiscoveryTests.WaitForRegistryAsync(node2, r => r.RemoteWorkloads == 2, TimeSpan.FromSeconds(10), "the CNI pod published by node1");
        LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
        string outbound = TestData.Marker("cni-out");
        string inbound = TestData.Marker("cni-in");
        ProbeResult sent = await pod.ProbeAsync(remoteEcho.EndPoint, outbound, TimeSpan.FromSeconds(5));
        Assert.True(sent is { Outcome: ProbeOutcome.Answered } && sent.Answer == outbound, mesh.Explain($"from the CNI pod: {sent}"));
        ProbeResult received = await remote.ProbeAsync(podEcho.EndPoint, inbound, TimeSpan.FromSeconds(5));
        Assert.True(received is { Outcome: ProbeOutcome.Answered } && received.Answer == inbound, mesh.Explain($"to the CNI pod: {received}"));
        await node1.WaitForFlowsAsync(f => f.Direction == "outbound" && f.SourceWorkload == "web-1.shop" && f.Encrypted && f.Path == "tunnel");
        await node1.WaitForFlowsAsync(f => f.Direction == "inbound" && f.DestinationWorkload == "web-1.shop" && f.Encrypted && f.SourceIdentity == remote.Identity);
        CapturedTraffic wire = await link.StopAsync();
        Assert.False(wire.Contains(outbound) || wire.Contains(inbound), $"a marker crossed node1's link in plaintext ({wire})");

        // CHECK passes; a repeated ADD of the same attachment is answered without a second capture.
        CniResult check = await runtime.CheckAsync(pod);
        Assert.True(check.Succeeded, mesh.Explain($"CHECK: {check}"));
        CniResult again = await runtime.RepeatAsync("nodemesh-cni", "ADD", pod);
        Assert.True(again.Succeeded, mesh.Explain($"repeated ADD: {again}"));
        Assert.Single(await node1.WorkloadListAsync(), w => w.Name == "web-1.shop");

        // DEL: rules, listeners, the registration and the published entry go; a second DEL is fine; CHECK now fails.
        CniResult deleted = await runtime.DeleteAsync(pod);
        Assert.True(deleted.Succeeded, mesh.Explain($"DEL: {deleted}"));
        Assert.DoesNotContain(await node1.WorkloadListAsync(), w => w.Name == "web-1.shop");
        Assert.DoesNotContain("NODEMESH", await pod.IptablesSaveAsync(), StringComparison.Ordinal);
        await EtcdDiscoveryTests.WaitForRegistryAsync(node2, r => r.RemoteWorkloads == 1, TimeSpan.FromSeconds(5), "the CNI pod withdrawn");
        Assert.DoesNotContain("web-1.shop", await File.ReadAllTextAsync(Path.Combine(node1.StateDir, "workloads.json")), StringComparison.Ordinal);
        Assert.True((await runtime.DeleteAsync(pod)).Succeeded, "a second DEL must succeed");
        CniResult stale = await runtime.CheckAsync(pod.ContainerId, pod.NetnsPath, "shop", "web-1");
        Assert.True(stale.ErrorCode is not null and not 0, $"CHECK after DEL: {stale}");
    }

    [Fact]
    public async Task ARestartedAgent_CapturesItsCniPodsAgain_ForgetsOnesDeletedWhileItWasDown_AndGcRemovesOnesTheRuntimeNoLongerHas()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1));
        var runtime = new CniRuntime(mesh, mesh.Node(1), CniRuntime.BridgeThenShim(mesh, mesh.Node(1), node1.SocketPath));
        var pods = new List<CniPod>();
        foreach (string name in new[] { "kept-1", "deleted-2", "collected-3" })
        {
            (CniPod? pod, CniResult added) = await runtime.AddPodAsync("shop", name);
            Assert.True(pod is not null, mesh.Explain($"ADD {name}: {added}"));
            pods.Add(pod);
        }

        // Outside the mesh, reached through the agent's passthrough while it runs.
        TcpTestServer outside = await mesh.Ext.StartTcpServerAsync(8081, ServerMode.Echo);
        ProbeResult open = await pods[0].ProbeAsync(outside.EndPoint, "while the agent runs", TimeSpan.FromSeconds(5));
        Assert.True(open is { Outcome: ProbeOutcome.Answered }, mesh.Explain($"{open}"));

        // Down: a pod deleted meanwhile (DEL succeeds without the agent, the runtime removes its namespace).
        Assert.Equal(0, await node1.StopAsync());
        Assert.True((await runtime.DeleteAsync(pods[1])).Succeeded, "DEL with the agent down must succeed");
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "ip", "netns", "del", pods[1].Namespace);
        // Meanwhile the kept pod stays closed: its rules are in place, nothing listens, nothing leaves in plaintext.
        ProbeResult closed = await pods[0].ProbeAsync(outside.EndPoint, "while the agent is down", TimeSpan.FromSeconds(2));
        Assert.True(closed.Outcome != ProbeOutcome.Answered, $"{closed}");

        await node1.RestartAsync();
        List<string> listed = [.. (await node1.WorkloadListAsync()).Where(w => w.Source == "cni").Select(w => w.Name).Order()];
        Assert.Equal(["collected-3.shop", "kept-1.shop"], listed);
        Assert.True(await node1.WaitForOutputAsync("saved workload deleted-2.shop not restored"), node1.Explain("the gone pod's drop is not logged"));
        CniResult check = await runtime.RepeatAsync("nodemesh-cni", "CHECK", pods[0]);
        Assert.True(check.Succeeded, mesh.Explain($"CHECK of the restored pod: {check}"));

        // GC (asked of the shim alone: Debian's bridge speaks CNI 1.0, before GC): the runtime has only the kept pod; the other goes, rules and all.
        CniResult collected = await runtime.GcAsync([pods[0]]);
        Assert.True(collected.Succeeded, collected.ToString());
        Assert.Equal(["kept-1.shop"], (await node1.WorkloadListAsync()).Where(w => w.Source == "cni").Select(w => w.Name));
        Assert.DoesNotContain("NODEMESH", await pods[2].IptablesSaveAsync(), StringComparison.Ordinal);
        Assert.Contains("NODEMESH", await pods[0].IptablesSaveAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MalformedInput_AMissingNetns_AndAnUnreachableAgent_GiveTheRightCodes_AndAnExcludedNamespaceNeedsNoAgent()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess node1 = await mesh.StartAgentAsync(mesh.Node(1));
        var runtime = new CniRuntime(mesh, mesh.Node(1), CniRuntime.BridgeThenShim(mesh, mesh.Node(1), node1.SocketPath));
        string sandbox = "/var/run/netns/" + await runtime.CreateSandboxAsync();
        Dictionary<string, string> variables = CniRuntime.Attachment("c0ffee01", sandbox, "eth0", "shop", "web-2");

        CniResult garbage = await runtime.RunRawAsync("nodemesh-cni", "ADD", variables, "{\"cniVersion\": \"1.0.0\", \"name\": ");
        Assert.True(garbage.ErrorCode == 6, garbage.ToString());
        Assert.DoesNotContain("   at ", garbage.Stderr, StringComparison.Ordinal);

        CniResult missing = await runtime.AddAsync("c0ffee02", "/var/run/netns/" + mesh.Prefix + "-gone", "shop", "web-3");
        Assert.True(missing.ErrorCode is not null && missing.Plugin == "bridge", $"the bridge plug-in must refuse a missing netns first: {missing}");
        CniResult missingShim = await runtime.RunRawAsync("nodemesh-cni", "ADD", CniRuntime.Attachment("c0ffee02", "/var/run/netns/" + mesh.Prefix + "-gone", "eth0", "shop", "web-3"),
            """{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"nodemesh-cni","prevResult":{"ips":[{"address":"10.240.1.120/24"}]}}""");
        Assert.True(missingShim.ErrorCode == 3, missingShim.ToString());

        // The agent stops: ADD fails closed (try again later), DEL still succeeds, STATUS says the plug-in is not available.
        Assert.Equal(0, await node1.StopAsync());
        CniResult closed = await runtime.AddAsync("c0ffee01", sandbox, "shop", "web-2");
        Assert.True(closed.ErrorCode == 11 && closed.Plugin == "nodemesh-cni", closed.ToString());
        Assert.Contains("fail closed", closed.Json!["details"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.True((await runtime.DeleteAsync("c0ffee01", sandbox, "shop", "web-2")).Succeeded, "DEL with the agent down must succeed");
        CniResult status = await runtime.StatusAsync();
        Assert.True(status.ErrorCode == 50, status.ToString());

        // An excluded namespace is wired up and passed through with no agent at all.
        (CniPod? system, CniResult excluded) = await runtime.AddPodAsync("kube-system", "coredns-1");
        Assert.True(system is not null, excluded.ToString());
        Assert.DoesNotContain("NODEMESH", await system.IptablesSaveAsync(), StringComparison.Ordinal);
    }
}
