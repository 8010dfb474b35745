using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Unit;

public sealed class PeerCertificateVerifierTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "nm-ca-" + Guid.NewGuid().ToString("N"));
    private readonly CertificateAuthority _ca;
    private readonly PeerCertificateVerifier _verifier;

    public PeerCertificateVerifierTests()
    {
        _ca = CertificateAuthority.Create(_dir, "cluster.local", TimeSpan.FromDays(1));
        _verifier = new PeerCertificateVerifier("cluster.local", () => [_ca.Root]);
    }

    [Fact]
    public void IssuedCertificate_IsAccepted_WithItsExactIdentity()
    {
        var id = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
        using X509Certificate2 cert = _ca.Issue(id, TimeSpan.FromHours(1));
        Assert.True(_verifier.TryVerify(cert, out SpiffeId? peer, out string? reason), reason);
        Assert.Equal(id, peer);
        Assert.True(cert.HasPrivateKey);
        Assert.Equal(["spiffe://cluster.local/ns/shop/sa/web"], PeerCertificateVerifier.ReadUriSans(cert));
    }

    [Fact]
    public async Task UntrustedCertificateWithFetchUrls_IsRefused_WithoutFetchingThem()
    {
        await using var trap = new Identity.FetchTrap();
        using X509Certificate2 untrusted = Identity.UntrustedCertificates.WithFetchUrls("spiffe://cluster.local/ns/shop/sa/web", trap.Url);

        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(_verifier.TryVerify(untrusted, out _, out string? reason));
        Assert.Contains("does not chain", reason, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"verifying took {watch.Elapsed.TotalMilliseconds:0} ms");
        await Task.Delay(100);
        Assert.Equal(0, trap.Connections);
    }

    [Fact]
    public void ChainPolicy_ForSslStreams_TrustsTheBundleOnly_AndNeverDownloads()
    {
        X509ChainPolicy policy = _verifier.CreateChainPolicy();
        Assert.Equal(X509ChainTrustMode.CustomRootTrust, policy.TrustMode);
        Assert.True(policy.DisableCertificateDownloads);
        Assert.Equal(X509RevocationMode.NoCheck, policy.RevocationMode);
        Assert.Equal(_ca.Root.Thumbprint, Assert.Single(policy.CustomTrustStore).Thumbprint);
    }

    [Fact]
    public void CertificateFromAnotherCa_IsRefused()
    {
        string other = _dir + "-other";
        using var foreign = CertificateAuthority.Create(other, "cluster.local", TimeSpan.FromDays(1));
        using X509Certificate2 cert = foreign.Issue(SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web"), TimeSpan.FromHours(1));
        Assert.False(_verifier.TryVerify(cert, out _, out string? reason));
        Assert.Contains("does not chain", reason, StringComparison.Ordinal);
        Directory.Delete(other, true);
    }

    [Fact]
    public void OtherTrustDomain_IsRefused()
    {
        using X509Certificate2 cert = _ca.Issue(SpiffeId.Parse("spiffe://evil.local/ns/shop/sa/web"), TimeSpan.FromHours(1));
        Assert.False(_verifier.TryVerify(cert, out _, out string? reason));
        Assert.Contains("not in trust domain cluster.local", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void ExpiredOrMissingCertificate_IsRefused()
    {
        Assert.False(_verifier.TryVerify(null, out _, out string? reason));
        Assert.Equal("no certificate presented", reason);

        using X509Certificate2 expired = SignDirectly(san => san.AddUri(new Uri("spiffe://cluster.local/ns/a/sa/b")), DateTimeOffset.UtcNow.AddDays(-2), DateTimeOffset.UtcNow.AddDays(-1));
        Assert.False(_verifier.TryVerify(expired, out _, out reason));
        Assert.Contains("NotTimeValid", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TwoUriSans_OrNone_AreRefused()
    {
        using X509Certificate2 two = SignDirectly(san =>
        {
            san.AddUri(new Uri("spiffe://cluster.local/ns/a/sa/b"));
            san.AddUri(new Uri("spiffe://cluster.local/ns/a/sa/c"));
        }, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        Assert.False(_verifier.TryVerify(two, out _, out string? reason));
        Assert.Contains("exactly one URI SAN, found 2", reason, StringComparison.Ordinal);

        using X509Certificate2 none = SignDirectly(san => san.AddDnsName("web.shop"), DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        Assert.False(_verifier.TryVerify(none, out _, out reason));
        Assert.Contains("found 0", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void CaInit_RefusesToOverwrite_AndKeyIsPrivate()
    {
        Assert.Throws<InvalidOperationException>(() => CertificateAuthority.Create(_dir, "cluster.local", TimeSpan.FromDays(1)));
        UnixFileMode mode = File.GetUnixFileMode(Path.Combine(_dir, "ca.key"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
        using CertificateAuthority loaded = CertificateAuthority.Load(_dir);
        Assert.Equal(_ca.Root.Thumbprint, loaded.Root.Thumbprint);
    }

    private X509Certificate2 SignDirectly(Action<SubjectAlternativeNameBuilder> sans, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        // Signs with the CA's key as loaded from disk, to build certificates the CA itself would never issue.
        using var caKey = ECDsa.Create();
        caKey.ImportFromPem(File.ReadAllText(Path.Combine(_dir, "ca.key")));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        sans(san);
        request.CertificateExtensions.Add(san.Build(true));
        return request.Create(_ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), notBefore, notAfter, [1, 2, 3, 4]);
    }

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
