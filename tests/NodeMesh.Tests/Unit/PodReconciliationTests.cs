using System.Net;
using NodeMesh.Contracts;
using NodeMesh.Discovery;
using NodeMesh.Pods;

namespace NodeMesh.Tests.Unit;

/// <summary>The start-up reconcile's plan: pods gone or replaced are forgotten, pods on the node but not captured are adopted.</summary>
public class PodReconciliationTests
{
    private static readonly HashSet<string> Excluded = ["kube-system"];

    [Fact]
    public void GoneReplacedAndExcludedPods_AreRemoved_LivePodsAreKept()
    {
        PodFacts live = Pod("shop", "web-1", "uid-1", "10.240.1.100");
        PodFacts replaced = Pod("shop", "web-2", "uid-new", "10.240.1.101");
        WorkloadInfo[] captured = [Cni("web-1.shop", "uid-1"), Cni("web-2.shop", "uid-old"), Cni("gone-3.shop", "uid-3"), Cni("dns-1.kube-system", "uid-4")];
        PodReconcilePlan plan = PodReconciliation.Plan([live, replaced, Pod("kube-system", "dns-1", "uid-4", "10.240.1.103")], captured, Excluded,
            name => captured.Any(c => c.Name == name));
        Assert.Equal(["web-2.shop", "gone-3.shop", "dns-1.kube-system"], plan.Remove);
    }

    [Fact]
    public void PodsOnTheNodeNotCaptured_AreAdopted_ButNotHostNetworkExcludedOrAddresslessOnes()
    {
        PodFacts missing = Pod("shop", "web-1", "uid-1", "10.240.1.100");
        PodFacts host = Pod("shop", "node-exporter", "uid-2", "10.231.0.1") with { HostNetwork = true };
        PodFacts excluded = Pod("kube-system", "dns-1", "uid-3", "10.240.1.102");
        PodFacts pending = Pod("shop", "pending-1", "uid-4");
        PodFacts ipv6Only = Pod("shop", "v6-1", "uid-5", "fd00::7");
        PodFacts captured = Pod("shop", "api-1", "uid-6", "10.240.1.104");
        PodReconcilePlan plan = PodReconciliation.Plan([missing, host, excluded, pending, ipv6Only, captured], [], Excluded, name => name == "api-1.shop");
        Assert.Equal([missing], plan.Adopt);
        Assert.Empty(plan.Remove);
        Assert.Same(missing, PodReconciliation.Owner(plan.Adopt, [IPAddress.Parse("127.0.0.1"), IPAddress.Parse("10.240.1.100")]));
        Assert.Null(PodReconciliation.Owner(plan.Adopt, [IPAddress.Parse("10.240.1.250")]));
    }

    private static PodFacts Pod(string ns, string name, string uid, params string[] ips) =>
        new(ns, name, uid, "default", "node1", [.. ips.Select(IPAddress.Parse)], new Dictionary<string, string>(), new Dictionary<string, string>(), HostNetwork: false);

    private static WorkloadInfo Cni(string name, string uid) => new() { Name = name, Source = "cni", PodUid = uid, ContainerId = "c-" + uid };
}
