using System.Net;
using NodeMesh.Contracts;
using NodeMesh.Discovery;
using NodeMesh.Identity;
using NodeMesh.Pods;
using NodeMesh.State;

namespace NodeMesh.Tests.Unit;

/// <summary>The agent's decision on a pod the CNI shim reports: nothing the shim sends is trusted, and the API server has the last word.</summary>
public class PodAdmissionTests
{
    private const string Node = "node1";

    private static readonly PodInfo Web = new()
    {
        Namespace = "shop", Name = "web-1", Uid = "0b9e6f38-1c4e-4d1a-9f7e-2a7f3c1b5d10", ContainerId = "abc123", Interface = "eth0",
        Netns = "/var/run/netns/cni-1", Ips = ["10.240.1.100", "fd00::5"],
    };

    [Fact]
    public void WithoutTheCluster_APodRunsAsItsNamespacesDefaultServiceAccount()
    {
        PodDecision decision = Decide(Web, directory: false, facts: null);
        WorkloadInfo workload = Assert.IsType<PodDecision.Capture>(decision).Workload;
        Assert.Equal(("web-1.shop", "10.240.1.100", "spiffe://cluster.local/ns/shop/sa/default", "cni", "abc123"),
            (workload.Name, workload.Ip, workload.Identity, workload.Source, workload.ContainerId));
    }

    [Fact]
    public void WithTheCluster_TheApiServersServiceAccountLabelsAndModeAreUsed()
    {
        PodFacts facts = Facts(annotations: new() { [PodAdmission.ModeAnnotation] = "STRICT" });
        WorkloadInfo workload = Assert.IsType<PodDecision.Capture>(Decide(Web, directory: true, facts)).Workload;
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/web", workload.Identity);
        Assert.Equal("STRICT", workload.Mode);
        Assert.Equal("web", workload.Labels!["app"]);
    }

    [Theory]
    [InlineData(null, "not listed by the API server")]
    [InlineData("node2", "placed on node 'node2'")]
    [InlineData("uid", "another pod of that name")]
    [InlineData("sa", "service account 'admin' from the runtime")]
    [InlineData("mode", "annotation nodemesh.io/mode")]
    public void WithTheCluster_APodItDoesNotPlaceHereAsDescribed_IsRefused(string? what, string reason)
    {
        PodInfo pod = what == "sa" ? Web with { ServiceAccount = "admin" } : Web;
        PodFacts? facts = what switch
        {
            null => null,
            "node2" => Facts() with { Node = "node2" },
            "uid" => Facts() with { Uid = "11111111-2222-3333-4444-555555555555" },
            "mode" => Facts(annotations: new() { [PodAdmission.ModeAnnotation] = "STRICT; -j ACCEPT" }),
            _ => Facts(),
        };
        PodDecision.Refuse refused = Assert.IsType<PodDecision.Refuse>(Decide(pod, directory: true, facts));
        Assert.Contains(reason, refused.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("namespace", "a b")]
    [InlineData("name", "$(reboot)")]
    [InlineData("uid", "1; -j ACCEPT")]
    [InlineData("containerId", "-j ACCEPT")]
    [InlineData("serviceAccount", "sa;rm")]
    [InlineData("netns", "relative")]
    [InlineData("ips", "10.240.1.100/24")]
    [InlineData("ips", "fd00::5")]
    public void HostileFields_AreRefusedNamingTheField(string field, string value)
    {
        PodInfo pod = field switch
        {
            "namespace" => Web with { Namespace = value },
            "name" => Web with { Name = value },
            "uid" => Web with { Uid = value },
            "containerId" => Web with { ContainerId = value },
            "serviceAccount" => Web with { ServiceAccount = value },
            "netns" => Web with { Netns = value },
            _ => Web with { Ips = [value] },
        };
        PodDecision.Refuse refused = Assert.IsType<PodDecision.Refuse>(Decide(pod, directory: false, facts: null));
        Assert.Contains($"pod.{field}", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TheSameAttachmentAgain_IsAlreadyCaptured_AndANewSandboxReplacesTheOld()
    {
        WorkloadInfo stored = Assert.IsType<PodDecision.Capture>(Decide(Web, false, null)).Workload;
        RegistrySnapshot current = Snapshot(Local(stored));
        Assert.IsType<PodDecision.AlreadyCaptured>(PodAdmission.Decide(Web, NoPodDirectory.Instance, null, "cluster.local", Node, [stored], current));
        PodDecision.Capture replaced = Assert.IsType<PodDecision.Capture>(
            PodAdmission.Decide(Web with { ContainerId = "def456" }, NoPodDirectory.Instance, null, "cluster.local", Node, [stored], current));
        Assert.Equal(["web-1.shop"], replaced.Replaces);
    }

    [Fact]
    public void AnAddressHandedOutAgain_ReplacesAGonePod_ButNeverAnotherKindOfWorkload()
    {
        WorkloadInfo old = Assert.IsType<PodDecision.Capture>(Decide(Web with { Name = "old-0" }, false, null)).Workload;
        PodDecision.Capture taken = Assert.IsType<PodDecision.Capture>(
            PodAdmission.Decide(Web, NoPodDirectory.Instance, null, "cluster.local", Node, [old], Snapshot(Local(old))));
        Assert.Equal(["old-0.shop"], taken.Replaces);

        Workload configured = Local(old) with { Name = "configured" };
        PodDecision.Refuse refused = Assert.IsType<PodDecision.Refuse>(
            PodAdmission.Decide(Web, NoPodDirectory.Instance, null, "cluster.local", Node, [], Snapshot(configured)));
        Assert.Contains("already belongs to workload 'configured'", refused.Reason, StringComparison.Ordinal);
    }

    private static PodDecision Decide(PodInfo pod, bool directory, PodFacts? facts) =>
        PodAdmission.Decide(pod, directory ? new ListingDirectory() : NoPodDirectory.Instance, facts, "cluster.local", Node, [], RegistrySnapshot.Empty);

    private static PodFacts Facts(Dictionary<string, string>? annotations = null) =>
        new("shop", "web-1", "0b9e6f38-1c4e-4d1a-9f7e-2a7f3c1b5d10", "web", Node, [], new Dictionary<string, string> { ["app"] = "web" },
            annotations ?? [], HostNetwork: false);

    private static Workload Local(WorkloadInfo info) => new(info.Name, IPAddress.Parse(info.Ip), SpiffeId.Parse(info.Identity), Node, info.Netns);

    private static RegistrySnapshot Snapshot(params Workload[] workloads) => new(workloads, new Dictionary<string, IPEndPoint>());

    /// <summary>A directory that knows pods (the decision only asks whether it does; the facts are passed in).</summary>
    private sealed class ListingDirectory : IPodDirectory
    {
        public bool KnowsPods => true;

        public Task<PodFacts?> FindAsync(string @namespace, string name, TimeSpan timeout, CancellationToken cancellationToken) => Task.FromResult<PodFacts?>(null);

        public IReadOnlyList<PodFacts>? PodsOnThisNode() => [];
    }
}
