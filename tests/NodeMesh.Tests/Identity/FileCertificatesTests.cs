using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>Certificates from a directory kept fresh by an external issuer: layout, reload on change, keep-last-good.</summary>
public sealed class FileCertificatesTests : IDisposable
{
    private const string TrustDomain = "cluster.local";
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Db = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db");
    private readonly string _caDir = Path.Combine(Path.GetTempPath(), "nm-fca-" + Guid.NewGuid().ToString("N"));
    private readonly string _dir = TempDir.Create("nm-files");
    private readonly CertificateAuthority _ca;
    private readonly ConcurrentQueue<string> _failures = new();

    public FileCertificatesTests()
    {
        _ca = CertificateAuthority.Create(_caDir, TrustDomain, TimeSpan.FromDays(1), TimeSpan.FromHours(12));
        File.WriteAllText(Path.Combine(_dir, "bundle.pem"), _ca.Root.ExportCertificatePem());
    }

    private FileCertificates Open(bool watch = true, TimeSpan? poll = null)
    {
        var files = new FileCertificates(_dir, TrustDomain, poll ?? TimeSpan.FromHours(1), NullLogger<FileCertificates>.Instance, watch);
        files.LoadFailed += (path, error) => _failures.Enqueue($"{path}: {error}");
        return files;
    }

    /// <summary>Writes a fresh certificate (leaf + intermediate) and key for <paramref name="identity"/> into <paramref name="dir"/>; returns its serial.</summary>
    private string Write(string dir, SpiffeId identity, TimeSpan? lifetime = null)
    {
        Directory.CreateDirectory(dir);
        using X509Certificate2 cert = _ca.Issue(identity, lifetime ?? TimeSpan.FromHours(1));
        File.WriteAllText(Path.Combine(dir, "cert.pem"), cert.ExportCertificatePem() + "\n" + _ca.Intermediate!.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "key.pem"), TestCertificates.KeyPem(cert));
        return cert.SerialNumber;
    }

    private string WorkloadDir(SpiffeId identity) => FileCertificates.DirectoryFor(_dir, identity);

    private string NodeDir => Path.Combine(_dir, "node");

    private static async Task<SslStreamCertificateContext> WaitForSerialAsync(Func<ValueTask<SslStreamCertificateContext>> get, string serial)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            string serving;
            try
            {
                SslStreamCertificateContext current = await get();
                if (current.TargetCertificate.SerialNumber == serial)
                {
                    return current;
                }

                serving = current.TargetCertificate.SerialNumber;
            }
            catch (CertificateUnavailableException ex)
            {
                serving = ex.Message;
            }

            if (clock.Elapsed > TimeSpan.FromSeconds(5))
            {
                throw new TimeoutException($"still serving {serving}, expected {serial}");
            }

            await Task.Delay(50);
        }
    }

    private async Task WaitForFailureAsync(string contains)
    {
        var clock = Stopwatch.StartNew();
        while (!_failures.Any(f => f.Contains(contains, StringComparison.Ordinal)))
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(5))
            {
                throw new TimeoutException($"no failure containing '{contains}'; got: {string.Join(" | ", _failures)}");
            }

            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task NodeAndWorkloadCertificates_AreReadFromTheLayout_AndWorkInAHandshake()
    {
        string nodeSerial = Write(NodeDir, MeshIdentities.Node(TrustDomain, "node1"));
        string webSerial = Write(WorkloadDir(Web), Web);
        Assert.EndsWith("/workloads/shop/web", WorkloadDir(Web), StringComparison.Ordinal);
        using FileCertificates files = Open();

        SslStreamCertificateContext node = await files.GetNodeCertificateAsync(default);
        SslStreamCertificateContext web = await files.GetWorkloadCertificateAsync(Web, default);
        Assert.Equal(nodeSerial, node.TargetCertificate.SerialNumber);
        Assert.Equal(webSerial, web.TargetCertificate.SerialNumber);
        Assert.Single(web.IntermediateCertificates);
        Assert.Same(web, await files.GetWorkloadCertificateAsync(Web, default));

        var verifier = new PeerCertificateVerifier(TrustDomain, () => files.TrustBundle);
        await using var peer = new EchoTlsServer(node, verifier);
        await using SslStream tls = await peer.ConnectAsync(web, verifier);
        await EchoTlsServer.EchoAsync(tls, "from files");
        Assert.Equal([webSerial], peer.Seen.ToArray());
    }

    [Fact]
    public async Task RewrittenFiles_ArePickedUp_ByTheWatcher()
    {
        Write(WorkloadDir(Web), Web);
        using FileCertificates files = Open(watch: true, poll: TimeSpan.FromHours(1));
        SslStreamCertificateContext first = await files.GetWorkloadCertificateAsync(Web, default);

        string renewed = Write(WorkloadDir(Web), Web);
        SslStreamCertificateContext second = await WaitForSerialAsync(() => files.GetWorkloadCertificateAsync(Web, default), renewed);
        Assert.NotSame(first, second);
    }

    [Fact]
    public async Task RewrittenFiles_ArePickedUp_ByThePoll_WithoutAWatcher()
    {
        Write(WorkloadDir(Web), Web);
        using FileCertificates files = Open(watch: false, poll: TimeSpan.FromMilliseconds(200));
        await files.GetWorkloadCertificateAsync(Web, default);

        string renewed = Write(WorkloadDir(Web), Web);
        await WaitForSerialAsync(() => files.GetWorkloadCertificateAsync(Web, default), renewed);
    }

    [Fact]
    public async Task BadFiles_AreRefused_AndTheLastGoodCertificateKeepsServing()
    {
        string good = Write(WorkloadDir(Web), Web);
        using FileCertificates files = Open();
        SslStreamCertificateContext first = await files.GetWorkloadCertificateAsync(Web, default);
        string certPath = Path.Combine(WorkloadDir(Web), "cert.pem");
        string keyPath = Path.Combine(WorkloadDir(Web), "key.pem");

        File.WriteAllText(certPath, "garbage");
        await WaitForFailureAsync("holds no certificate");
        Assert.Same(first, await files.GetWorkloadCertificateAsync(Web, default));
        Assert.Contains(files.Status(), s => s.Identity == Web && s.LastError is not null);

        // A new certificate whose key has not been written yet (the issuer writes one file, then the other).
        string keyBefore = File.ReadAllText(keyPath);
        using (X509Certificate2 next = _ca.Issue(Web, TimeSpan.FromHours(1)))
        {
            File.WriteAllText(certPath, next.ExportCertificatePem());
        }

        await WaitForFailureAsync("not a matching certificate and key");
        Assert.Equal(good, (await files.GetWorkloadCertificateAsync(Web, default)).TargetCertificate.SerialNumber);
        Assert.Equal(keyBefore, File.ReadAllText(keyPath));

        // Another workload's certificate in web's directory.
        using (X509Certificate2 db = _ca.Issue(Db, TimeSpan.FromHours(1)))
        {
            File.WriteAllText(keyPath, TestCertificates.KeyPem(db));
            File.WriteAllText(certPath, db.ExportCertificatePem());
        }

        await WaitForFailureAsync("but its directory is for spiffe://cluster.local/ns/shop/sa/web");
        Assert.Same(first, await files.GetWorkloadCertificateAsync(Web, default));

        // Good files again: picked up.
        string fixedSerial = Write(WorkloadDir(Web), Web);
        await WaitForSerialAsync(() => files.GetWorkloadCertificateAsync(Web, default), fixedSerial);
    }

    [Fact]
    public async Task MissingOrExpiredFiles_MakeTheIdentityUnavailable_WithTheReason()
    {
        using FileCertificates files = Open();
        var ex = await Assert.ThrowsAsync<CertificateUnavailableException>(() => files.GetWorkloadCertificateAsync(Db, default).AsTask());
        Assert.Contains("workloads/shop/db/cert.pem does not exist", ex.Message, StringComparison.Ordinal);
        ex = await Assert.ThrowsAsync<CertificateUnavailableException>(() => files.GetNodeCertificateAsync(default).AsTask());
        Assert.Contains("node", ex.Message, StringComparison.Ordinal);

        string dir = WorkloadDir(Web);
        Directory.CreateDirectory(dir);
        using X509Certificate2 expired = TestCertificates.SignWithRootKey(_caDir, Web, DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(-1));
        File.WriteAllText(Path.Combine(dir, "cert.pem"), expired.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "key.pem"), TestCertificates.KeyPem(expired));
        ex = await Assert.ThrowsAsync<CertificateUnavailableException>(() => files.GetWorkloadCertificateAsync(Web, default).AsTask());
        Assert.Contains("expired", ex.Message, StringComparison.Ordinal);

        // An identity whose files appear later is found without a restart.
        string serial = Write(WorkloadDir(Db), Db);
        await WaitForSerialAsync(() => files.GetWorkloadCertificateAsync(Db, default), serial);
    }

    [Fact]
    public async Task Bundle_IsReloaded_ToAddARoot_AndGarbageKeepsTheLastGood()
    {
        using FileCertificates files = Open();
        Assert.Single(files.TrustBundle);
        string nextDir = TempDir.Create("nm-fca-next");
        try
        {
            using var next = CertificateAuthority.Create(nextDir, TrustDomain, TimeSpan.FromDays(1));
            string bundle = Path.Combine(_dir, "bundle.pem");
            File.WriteAllText(bundle, _ca.Root.ExportCertificatePem() + "\n" + next.Root.ExportCertificatePem());
            var clock = Stopwatch.StartNew();
            while (files.TrustBundle.Count != 2 && clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                await Task.Delay(50);
            }

            Assert.Equal(2, files.TrustBundle.Count);
            using X509Certificate2 fromNext = next.Issue(Web, TimeSpan.FromHours(1));
            Assert.True(new PeerCertificateVerifier(TrustDomain, () => files.TrustBundle).TryVerify(fromNext, out _, out string? reason), reason);

            File.WriteAllText(bundle, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n");
            await WaitForFailureAsync("bundle.pem");
            Assert.Equal(2, files.TrustBundle.Count);
            Assert.NotNull(files.BundleError);
        }
        finally
        {
            TempDir.Delete(nextDir);
        }
    }

    [Fact]
    public void MissingOrMalformedBundle_IsAStartupError()
    {
        File.Delete(Path.Combine(_dir, "bundle.pem"));
        var ex = Assert.Throws<InvalidDataException>(() => Open());
        Assert.Contains("bundle.pem does not exist", ex.Message, StringComparison.Ordinal);

        using X509Certificate2 leaf = _ca.Issue(Web, TimeSpan.FromHours(1));
        File.WriteAllText(Path.Combine(_dir, "bundle.pem"), leaf.ExportCertificatePem());
        ex = Assert.Throws<InvalidDataException>(() => Open());
        Assert.Contains("not a CA certificate", ex.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _ca.Dispose();
        TempDir.Delete(_caDir);
        TempDir.Delete(_dir);
    }
}
