using System.Security.Cryptography.X509Certificates;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Certificates kept on disk by an external issuer (cert-manager, SPIRE): agents with the "files" source read
/// them, the mesh works, and a certificate rewritten on disk is picked up without a restart.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class FileCertificatesSourceTests(ITestOutputHelper output)
{
    private const int Port = 7300;

    /// <summary>Plays the external issuer: writes the layout the files source reads, signed by the topology's CA.</summary>
    private static string Issue(Topology mesh, Node node, TimeSpan lifetime)
    {
        string dir = Path.Combine(mesh.WorkDir, "issued-" + node.Name);
        using CertificateAuthority ca = CertificateAuthority.Load(mesh.CaDir);
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(dir).FullName, "bundle.pem"), ca.Root.ExportCertificatePem());
        Write(ca, Path.Combine(dir, "node"), MeshIdentities.Node(Topology.TrustDomain, node.Name), lifetime);
        foreach (Pod pod in node.Pods)
        {
            SpiffeId id = SpiffeId.Parse(pod.Identity);
            Write(ca, Path.Combine(dir, "workloads", id.Namespace, id.ServiceAccount), id, lifetime);
        }

        return dir;
    }

    private static void Write(CertificateAuthority ca, string dir, SpiffeId identity, TimeSpan lifetime)
    {
        Directory.CreateDirectory(dir);
        using X509Certificate2 certificate = ca.Issue(identity, lifetime);
        using var key = certificate.GetECDsaPrivateKey()!;
        File.WriteAllText(Path.Combine(dir, "key.pem.tmp"), key.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(dir, "cert.pem.tmp"), certificate.ExportCertificatePem());
        File.Move(Path.Combine(dir, "key.pem.tmp"), Path.Combine(dir, "key.pem"), overwrite: true);
        File.Move(Path.Combine(dir, "cert.pem.tmp"), Path.Combine(dir, "cert.pem"), overwrite: true);
    }

    [Fact]
    public async Task AgentsWithTheFilesSource_CarryTraffic_AndPickUpRewrittenCertificates()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        string dir1 = Issue(mesh, mesh.Node(1), TimeSpan.FromHours(1));
        string dir2 = Issue(mesh, mesh.Node(2), TimeSpan.FromHours(1));
        await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c => c.Certificates = new CertificatesConfig { Source = "files", Dir = dir1, PollInterval = TimeSpan.FromSeconds(1) });
        AgentProcess node2 = await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = c => c.Certificates = new CertificatesConfig { Source = "files", Dir = dir2, PollInterval = TimeSpan.FromSeconds(1) });
        await mesh.Pod(2, 1).StartTcpServerAsync(Port, ServerMode.Echo);

        ProbeResult first = await mesh.Pod(1, 1).ProbeAsync(mesh.Pod(2, 1).EndPoint(Port), "files");
        Assert.True(first is { Outcome: ProbeOutcome.Answered, Answer: "files" }, mesh.Explain($"with file certificates: {first}"));

        // The issuer renews node2's certificates on disk; the agent takes them without a restart and keeps working.
        Issue(mesh, mesh.Node(2), TimeSpan.FromHours(2));
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.True(node2.IsRunning, node2.Explain("node2 stopped after its certificates were rewritten"));
        ProbeResult after = await mesh.Pod(1, 1).ProbeAsync(mesh.Pod(2, 1).EndPoint(Port), "renewed");
        Assert.True(after is { Outcome: ProbeOutcome.Answered, Answer: "renewed" }, mesh.Explain($"after the rewrite: {after}"));
        string nodeIdentity = MeshIdentities.Node(Topology.TrustDomain, "node2").Uri;
        int loads = System.Text.RegularExpressions.Regex.Count(node2.Output, $"certificate for {System.Text.RegularExpressions.Regex.Escape(nodeIdentity)} loaded");
        Assert.True(loads >= 2, node2.Explain($"node2's certificate was loaded {loads} time(s); the rewrite should have been picked up"));
    }
}
