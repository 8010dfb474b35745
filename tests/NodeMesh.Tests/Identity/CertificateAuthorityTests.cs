using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>The CA's intermediate, key files, leaf lifetimes, and trust bundles with more than one root.</summary>
public sealed class CertificateAuthorityTests : IDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private readonly List<string> _dirs = [];

    private string NewDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "nm-ca-" + Guid.NewGuid().ToString("N"));
        _dirs.Add(dir);
        return dir;
    }

    [Fact]
    public void Intermediate_SignsLeaves_AndTheChainVerifiesAgainstTheRootOnly()
    {
        using var ca = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(10), TimeSpan.FromDays(5));
        Assert.NotNull(ca.Intermediate);
        using X509Certificate2 leaf = ca.Issue(Web, TimeSpan.FromHours(1));
        Assert.Equal(ca.Intermediate.SubjectName.Name, leaf.IssuerName.Name);
        Assert.Single(ca.Chain);
        Assert.Single(ca.TrustBundle.Roots);
        Assert.Equal(ca.Root.Thumbprint, ca.TrustBundle.Roots[0].Thumbprint);

        var verifier = new PeerCertificateVerifier("cluster.local", () => ca.TrustBundle.Roots);
        Assert.True(verifier.TryVerify(leaf, ca.Chain, out SpiffeId? id, out string? reason), reason);
        Assert.Equal(Web, id);

        // Without the intermediate the leaf cannot reach the root; trust never comes from what the peer sends.
        var fresh = new PeerCertificateVerifier("cluster.local", () => ca.TrustBundle.Roots);
        Assert.False(fresh.TryVerify(leaf, out _, out reason));
        Assert.Contains("does not chain", reason, StringComparison.Ordinal);

        // Once a chain through the intermediate verified, the leaf alone does (a resumed TLS session sends only the leaf).
        Assert.True(verifier.TryVerify(leaf, out _, out reason), reason);
        using var otherRoot = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1));
        Assert.False(new PeerCertificateVerifier("cluster.local", () => [otherRoot.Root]).TryVerify(leaf, ca.Chain, out _, out _));
        var intermediateOnly = new PeerCertificateVerifier("cluster.local", () => []);
        Assert.False(intermediateOnly.TryVerify(leaf, ca.Chain, out _, out _));
    }

    [Fact]
    public void KeyFiles_AreOwnerOnly_AndLoadFindsTheIntermediate()
    {
        string dir = NewDir();
        using (CertificateAuthority.Create(dir, "cluster.local", TimeSpan.FromDays(10), TimeSpan.FromDays(5)))
        {
        }

        foreach (string key in new[] { "ca.key", "intermediate.key" })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, key)));
        }

        // The root key may live offline once an intermediate signs.
        File.Delete(Path.Combine(dir, "ca.key"));
        Assert.True(CertificateAuthority.Exists(dir));
        using CertificateAuthority loaded = CertificateAuthority.Load(dir);
        Assert.NotNull(loaded.Intermediate);
        using X509Certificate2 leaf = loaded.Issue(Web, TimeSpan.FromHours(1));
        var verifier = new PeerCertificateVerifier("cluster.local", () => loaded.TrustBundle.Roots);
        Assert.True(verifier.TryVerify(leaf, loaded.Chain, out _, out string? reason), reason);
    }

    [Fact]
    public void Load_RefusesAnIntermediateFromAnotherRoot()
    {
        string dir = NewDir();
        string other = NewDir();
        using (CertificateAuthority.Create(dir, "cluster.local", TimeSpan.FromDays(10), TimeSpan.FromDays(5)))
        using (CertificateAuthority.Create(other, "cluster.local", TimeSpan.FromDays(10), TimeSpan.FromDays(5)))
        {
        }

        File.Copy(Path.Combine(other, "intermediate.crt"), Path.Combine(dir, "intermediate.crt"), overwrite: true);
        File.Copy(Path.Combine(other, "intermediate.key"), Path.Combine(dir, "intermediate.key"), overwrite: true);
        var ex = Assert.Throws<InvalidDataException>(() => CertificateAuthority.Load(dir));
        Assert.Contains("is not issued by", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LeafLifetime_IsWhatWasAsked_ButNeverBeyondTheIssuer()
    {
        using var ca = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(10), TimeSpan.FromHours(2));
        using X509Certificate2 shortLeaf = ca.Issue(Web, TimeSpan.FromMinutes(30));
        Assert.InRange(shortLeaf.NotAfter.ToUniversalTime() - DateTime.UtcNow, TimeSpan.FromMinutes(29), TimeSpan.FromMinutes(31));

        using X509Certificate2 clamped = ca.Issue(Web, CertificateAuthority.DefaultLeafLifetime);
        Assert.True(clamped.NotAfter <= ca.Intermediate!.NotAfter);
        Assert.True(clamped.NotBefore >= ca.Intermediate.NotBefore);

        Assert.Throws<ArgumentOutOfRangeException>(() => ca.Issue(Web, TimeSpan.Zero));
    }

    [Fact]
    public void IssuedForAKey_CarriesExactlyTheIdentity_AndNoPrivateKey()
    {
        using var ca = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        CertificateRequest request = CertificateRequest.LoadSigningRequestPem(SigningRequests.Create(key, Web), HashAlgorithmName.SHA256);
        using X509Certificate2 cert = ca.Issue(Web, request.PublicKey, TimeSpan.FromHours(1));
        Assert.False(cert.HasPrivateKey);
        Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(cert));
        using ECDsa? certKey = cert.GetECDsaPublicKey();
        Assert.Equal(key.ExportSubjectPublicKeyInfo(), certKey!.ExportSubjectPublicKeyInfo());
    }

    [Fact]
    public void TrustBundleWithTwoRoots_AcceptsChainsToEither_AndDroppingOneRefusesItsChains()
    {
        using var oldCa = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1));
        using var newCa = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1), TimeSpan.FromHours(12));
        using X509Certificate2 oldLeaf = oldCa.Issue(Web, TimeSpan.FromHours(1));
        using X509Certificate2 newLeaf = newCa.Issue(Web, TimeSpan.FromHours(1));

        var bundle = new TrustBundle([oldCa.Root]);
        var verifier = new PeerCertificateVerifier("cluster.local", () => bundle.Roots);
        Assert.True(verifier.TryVerify(oldLeaf, oldCa.Chain, out _, out string? reason), reason);
        Assert.False(verifier.TryVerify(newLeaf, newCa.Chain, out _, out _));

        // Overlap: both roots.
        int changes = 0;
        bundle.Changed += _ => changes++;
        Assert.True(bundle.Update([oldCa.Root, newCa.Root]));
        Assert.True(verifier.TryVerify(oldLeaf, oldCa.Chain, out _, out reason), reason);
        Assert.True(verifier.TryVerify(newLeaf, newCa.Chain, out _, out reason), reason);
        Assert.False(bundle.Update([newCa.Root, oldCa.Root]));

        // The old root retired.
        Assert.True(bundle.Update([newCa.Root]));
        Assert.False(verifier.TryVerify(oldLeaf, oldCa.Chain, out _, out _));
        Assert.True(verifier.TryVerify(newLeaf, newCa.Chain, out _, out reason), reason);
        Assert.Equal(2, changes);
    }

    [Fact]
    public void AdditionalRoots_InTheCaDirectory_JoinItsTrustBundle()
    {
        string dir = NewDir();
        using var ca = CertificateAuthority.Create(dir, "cluster.local", TimeSpan.FromDays(1));
        using var next = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1));
        Assert.False(ca.ReloadTrustBundle());

        CertificateAuthority.WriteAdditionalRoots(dir, [next.Root]);
        Assert.True(ca.ReloadTrustBundle());
        Assert.Equal(2, ca.TrustBundle.Roots.Count);
        using (CertificateAuthority loaded = CertificateAuthority.Load(dir))
        {
            Assert.Equal(2, loaded.TrustBundle.Roots.Count);
        }

        File.WriteAllText(Path.Combine(dir, "trust-bundle.pem"), "not a certificate");
        Assert.Throws<InvalidDataException>(() => ca.ReloadTrustBundle());
        Assert.Equal(2, ca.TrustBundle.Roots.Count);

        CertificateAuthority.WriteAdditionalRoots(dir, []);
        Assert.True(ca.ReloadTrustBundle());
        Assert.Single(ca.TrustBundle.Roots);
    }

    [Fact]
    public void TrustBundle_RefusesEmptyGarbageAndLeafCertificates()
    {
        using var ca = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1));
        using X509Certificate2 leaf = ca.Issue(Web, TimeSpan.FromHours(1));
        Assert.Contains("no certificate", Assert.Throws<InvalidDataException>(() => TrustBundle.ParsePem("")).Message, StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => TrustBundle.ParsePem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"));
        Assert.Contains("not a CA certificate", Assert.Throws<InvalidDataException>(() => TrustBundle.ParsePem(leaf.ExportCertificatePem())).Message, StringComparison.Ordinal);
        Assert.Equal(ca.Root.Thumbprint, TrustBundle.ParsePem(ca.Root.ExportCertificatePem())[0].Thumbprint);
    }

    [Fact]
    public async Task IntermediateChain_IsSentInTheHandshake_AndVerifiedByBothSides()
    {
        using var ca = CertificateAuthority.Create(NewDir(), "cluster.local", TimeSpan.FromDays(1), TimeSpan.FromHours(12));
        var verifier = new PeerCertificateVerifier("cluster.local", () => ca.TrustBundle.Roots);
        SslStreamCertificateContext server = SslStreamCertificateContext.Create(ca.Issue(MeshIdentities.Node("cluster.local", "node1"), TimeSpan.FromHours(1)), ca.Chain, offline: true);
        SslStreamCertificateContext client = SslStreamCertificateContext.Create(ca.Issue(Web, TimeSpan.FromHours(1)), ca.Chain, offline: true);
        await using var echo = new EchoTlsServer(server, verifier);
        await using SslStream tls = await echo.ConnectAsync(client, verifier);
        await EchoTlsServer.EchoAsync(tls, "through the intermediate");

        // A second connection may resume the first one's session, in which no chain is sent: still accepted.
        await using SslStream again = await echo.ConnectAsync(client, verifier);
        await EchoTlsServer.EchoAsync(again, "resumed");
        Assert.Equal(2, echo.Seen.Count);
        Assert.DoesNotContain(echo.Seen, s => s.StartsWith("refused", StringComparison.Ordinal));
    }

    public void Dispose()
    {
        foreach (string dir in _dirs)
        {
            TempDir.Delete(dir);
        }
    }
}
