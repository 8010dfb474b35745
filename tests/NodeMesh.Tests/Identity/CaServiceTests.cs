using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>The CA service and its client over real TLS 1.3 on loopback: joining, workload certificates, and every refusal.</summary>
public sealed class CaServiceTests : IAsyncLifetime
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Db = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db");
    private readonly CaHarness _ca = new(intermediate: true);

    public Task InitializeAsync()
    {
        _ca.Start();
        _ca.Place("node-a", Web);
        _ca.Place("node-b", Db);
        return Task.CompletedTask;
    }

    private async Task<SslStreamCertificateContext> JoinAsync(string node)
    {
        IssuedCertificate issued = await _ca.Client().JoinAsync(node, _ca.Tokens.Create(node, TimeSpan.FromMinutes(5)), default);
        return issued.CreateContext();
    }

    [Fact]
    public async Task Join_WithAValidToken_GivesTheNodeItsCertificateChainAndBundle()
    {
        IssuedCertificate issued = await _ca.Client().JoinAsync("node-a", _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5)), default);

        Assert.True(issued.Certificate.HasPrivateKey);
        Assert.Equal(["spiffe://cluster.local/ns/nodemesh-system/sa/node.node-a"], PeerCertificateVerifier.ReadUriSans(issued.Certificate));
        Assert.Single(issued.Chain);
        Assert.Equal(_ca.Ca.Intermediate!.Thumbprint, issued.Chain[0].Thumbprint);
        Assert.Equal(_ca.Ca.Root.Thumbprint, Assert.Single(issued.TrustBundle).Thumbprint);
        Assert.InRange(issued.Certificate.NotAfter.ToUniversalTime() - DateTime.UtcNow, TimeSpan.FromMinutes(55), TimeSpan.FromMinutes(61));
        CaDecision decision = await _ca.DecisionAsync(d => d.Kind == "join");
        Assert.True(decision.Issued);
        Assert.Equal("node-a", decision.Node);
        Assert.Equal(1, _ca.Server.IssuedCount);
    }

    [Theory]
    [InlineData("expired", "expired")]
    [InlineData("other-node", "for another node")]
    [InlineData("tampered", "not valid")]
    [InlineData("garbage", "malformed")]
    public async Task Join_WithABadToken_IsRefused_WithTheReason(string kind, string reason)
    {
        string token = kind switch
        {
            "expired" => _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddHours(-1)),
            "other-node" => _ca.Tokens.Create("node-b", TimeSpan.FromMinutes(5)),
            "tampered" => _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5))[..^3] + "AAA",
            _ => "nmjoin1.garbage",
        };

        var ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().JoinAsync("node-a", token, default));
        Assert.True(ex.Refused);
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
        CaDecision decision = await _ca.DecisionAsync(d => d.Kind == "join");
        Assert.False(decision.Issued);
        Assert.Contains(reason, decision.Reason, StringComparison.Ordinal);
        Assert.Equal(1, _ca.Server.RefusedCount);
        Assert.Equal(0, _ca.Server.IssuedCount);
    }

    [Fact]
    public async Task Join_WithAMalformedSigningRequest_IsRefused_AndDoesNotUseUpTheToken()
    {
        string token = _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5));

        CaResponse refused = _ca.Server.Decide(new CaRequest { Kind = CaRequestKinds.Join, Node = "node-a", Token = token, Csr = "not a CSR" }, null, "test");
        Assert.Null(refused.Certificate);
        Assert.False(string.IsNullOrEmpty(refused.Error));

        // The same token still admits the node with a proper request.
        IssuedCertificate issued = await _ca.Client().JoinAsync("node-a", token, default);
        Assert.True(issued.Certificate.HasPrivateKey);
    }

    [Fact]
    public async Task Join_WithATokenAlreadyUsed_IsRefused_AlsoAfterTheCaRestarts()
    {
        string token = _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5));
        await _ca.Client().JoinAsync("node-a", token, default);

        var again = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().JoinAsync("node-a", token, default));
        Assert.True(again.Refused);
        Assert.Contains("was already used", again.Message, StringComparison.Ordinal);

        await _ca.RestartAsync();
        var afterRestart = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().JoinAsync("node-a", token, default));
        Assert.True(afterRestart.Refused);
        Assert.Contains("was already used", afterRestart.Message, StringComparison.Ordinal);
        CaDecision refused = await _ca.DecisionAsync(d => d.Kind == "join" && !d.Issued);
        Assert.Contains("already used", refused.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Node_GetsCertificatesForItsOwnWorkloads_WithExactlyThatIdentity()
    {
        SslStreamCertificateContext node = await JoinAsync("node-a");
        IssuedCertificate web = await _ca.Client().RequestCertificateAsync(Web, node, default);
        Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(web.Certificate));
        Assert.True(web.Certificate.HasPrivateKey);

        // The certificate works in a real handshake, its chain sent along.
        var verifier = new PeerCertificateVerifier(CaHarness.TrustDomain, () => _ca.Ca.TrustBundle.Roots);
        await using var echo = new EchoTlsServer(node, verifier);
        await using SslStream tls = await echo.ConnectAsync(web.CreateContext(), verifier);
        await EchoTlsServer.EchoAsync(tls, "hello");
        Assert.Equal(web.Certificate.SerialNumber, Assert.Single(echo.Seen));
    }

    [Fact]
    public async Task Node_CannotObtainACertificate_ForAWorkloadRegisteredOnAnotherNode()
    {
        SslStreamCertificateContext nodeA = await JoinAsync("node-a");
        var ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().RequestCertificateAsync(Db, nodeA, default));
        Assert.True(ex.Refused);
        Assert.Contains("is not registered on node node-a", ex.Message, StringComparison.Ordinal);

        CaDecision decision = await _ca.DecisionAsync(d => d.Kind == "certificate");
        Assert.False(decision.Issued);
        Assert.Equal("node-a", decision.Node);
        Assert.Equal(Db.Uri, decision.Identity);
        Assert.Equal(1, _ca.Server.RefusedCount);
        Assert.Contains(_ca.Logger.Entries, e => e.Level == Microsoft.Extensions.Logging.LogLevel.Warning && e.Message.Contains("is not registered on node node-a", StringComparison.Ordinal));

        // Nor a mesh identity: another node's, or the CA's.
        foreach (SpiffeId reserved in new[] { MeshIdentities.Node(CaHarness.TrustDomain, "node-b"), MeshIdentities.Ca(CaHarness.TrustDomain) })
        {
            ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().RequestCertificateAsync(reserved, nodeA, default));
            Assert.True(ex.Message.Contains("reserved for the mesh", StringComparison.Ordinal), ex.Message + " log: " + string.Join("; ", _ca.Logger.Entries));
        }

        // node-b does get db.
        SslStreamCertificateContext nodeB = await JoinAsync("node-b");
        IssuedCertificate db = await _ca.Client().RequestCertificateAsync(Db, nodeB, default);
        Assert.Equal([Db.Uri], PeerCertificateVerifier.ReadUriSans(db.Certificate));
    }

    [Fact]
    public async Task Node_RenewsItsOwnCertificate_WithItsCurrentOne()
    {
        SslStreamCertificateContext node = await JoinAsync("node-a");
        SpiffeId self = MeshIdentities.Node(CaHarness.TrustDomain, "node-a");
        IssuedCertificate renewed = await _ca.Client().RequestCertificateAsync(self, node, default);
        Assert.Equal([self.Uri], PeerCertificateVerifier.ReadUriSans(renewed.Certificate));
        Assert.NotEqual(node.TargetCertificate.SerialNumber, renewed.Certificate.SerialNumber);
    }

    [Fact]
    public async Task CertificateRequest_WithoutANodeCertificate_IsRefused()
    {
        // A workload certificate presented as if it were a node's.
        using X509Certificate2 workload = _ca.Ca.Issue(Web, TimeSpan.FromHours(1));
        var asWorkload = SslStreamCertificateContext.Create(workload, _ca.Ca.Chain, offline: true);
        var ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().RequestCertificateAsync(Web, asWorkload, default));
        Assert.Contains("is not a node", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UntrustedClientCertificate_IsRefusedByTheCa()
    {
        string otherDir = TempDir.Create("nm-ca-foreign");
        try
        {
            using var foreign = CertificateAuthority.Create(otherDir, CaHarness.TrustDomain, TimeSpan.FromDays(1));
            using X509Certificate2 impostor = foreign.Issue(MeshIdentities.Node(CaHarness.TrustDomain, "node-a"), TimeSpan.FromHours(1));
            var context = SslStreamCertificateContext.Create(impostor, null, offline: true);
            var ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().RequestCertificateAsync(Web, context, default));
            Assert.False(ex.Refused);
            CaDecision decision = await _ca.DecisionAsync(d => d.Kind == "handshake");
            Assert.Contains("does not chain to the trust bundle", decision.Reason, StringComparison.Ordinal);
            Assert.Equal(0, _ca.Server.IssuedCount);
        }
        finally
        {
            TempDir.Delete(otherDir);
        }
    }

    [Fact]
    public async Task ExpiredClientCertificate_IsRefusedByTheCa()
    {
        using X509Certificate2 expired = TestCertificates.SignWithRootKey(_ca.Dir, MeshIdentities.Node(CaHarness.TrustDomain, "node-a"),
            DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(-1));
        var context = SslStreamCertificateContext.Create(expired, null, offline: true);
        await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client().RequestCertificateAsync(Web, context, default));
        CaDecision decision = await _ca.DecisionAsync(d => d.Kind == "handshake");
        Assert.Contains("NotTimeValid", decision.Reason, StringComparison.Ordinal);
        Assert.Equal(0, _ca.Server.IssuedCount);
    }

    [Fact]
    public async Task Client_RefusesACaThatIsNotTheCa()
    {
        // A server with a valid mesh certificate, but a node's identity rather than the CA's.
        var verifier = new PeerCertificateVerifier(CaHarness.TrustDomain, () => _ca.Ca.TrustBundle.Roots);
        SslStreamCertificateContext node = await JoinAsync("node-a");
        await using var impostor = new EchoTlsServer(node, verifier);
        var client = new CaClient(impostor.EndPoint, CaHarness.TrustDomain, () => _ca.Ca.TrustBundle.Roots, TimeSpan.FromSeconds(5));
        var ex = await Assert.ThrowsAsync<CaRequestException>(() => client.JoinAsync("node-c", "nmjoin1.x.y", default));
        Assert.Contains("expected spiffe://cluster.local/ns/nodemesh-system/sa/ca", ex.Message, StringComparison.Ordinal);

        // And a CA whose root it was not given.
        string otherDir = TempDir.Create("nm-ca-foreign");
        try
        {
            using var foreign = CertificateAuthority.Create(otherDir, CaHarness.TrustDomain, TimeSpan.FromDays(1));
            ex = await Assert.ThrowsAsync<CaRequestException>(() => _ca.Client(() => [foreign.Root]).JoinAsync("node-a", _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(1)), default));
            Assert.Contains("not trusted", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(otherDir);
        }
    }

    [Fact]
    public async Task UnreachableCa_FailsWithAClearError()
    {
        var client = new CaClient(new IPEndPoint(IPAddress.Loopback, FreePort()), CaHarness.TrustDomain, () => _ca.Ca.TrustBundle.Roots, TimeSpan.FromSeconds(2));
        var ex = await Assert.ThrowsAsync<CaRequestException>(() => client.JoinAsync("node-a", "nmjoin1.x.y", default));
        Assert.False(ex.Refused);
        Assert.Contains("unreachable", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Decide_IgnoresTheCsrsNames_AndRefusesBadCsrs()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        SpiffeId nodeA = MeshIdentities.Node(CaHarness.TrustDomain, "node-a");

        // The CSR asks for db (and the CA's identity); the request asks for web: only web is issued.
        var request = new CertificateRequest("CN=evil", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(Db.Uri));
        san.AddUri(new Uri(MeshIdentities.Ca(CaHarness.TrustDomain).Uri));
        san.AddDnsName("evil.example");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        CaResponse response = _ca.Server.Decide(new CaRequest { Kind = "certificate", Identity = Web.Uri, Csr = request.CreateSigningRequestPem() }, nodeA, "test");
        Assert.Null(response.Error);
        using X509Certificate2 issued = X509Certificate2.CreateFromPem(response.Certificate);
        Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(issued));
        Assert.Equal("", issued.Subject);
        Assert.False(issued.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);

        // A P-384 key, an RSA key, a broken signature, and no CSR at all.
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        Assert.Contains("P-256", Csr(new CertificateRequest("", p384, HashAlgorithmName.SHA384).CreateSigningRequestPem()), StringComparison.Ordinal);
        using var rsa = RSA.Create(2048);
        Assert.Contains("P-256", Csr(new CertificateRequest("", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).CreateSigningRequestPem()), StringComparison.Ordinal);
        byte[] der = new CertificateRequest("", key, HashAlgorithmName.SHA256).CreateSigningRequest();
        der[^3] ^= 0x55;
        Assert.Contains("signature", Csr(PemEncoding.WriteString("CERTIFICATE REQUEST", der)), StringComparison.Ordinal);
        Assert.Contains("missing", Csr(""), StringComparison.Ordinal);
        Assert.Contains("malformed", Csr("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"), StringComparison.Ordinal);

        string? Csr(string pem) => _ca.Server.Decide(new CaRequest { Kind = "certificate", Identity = Web.Uri, Csr = pem }, nodeA, "test").Error;
    }

    [Fact]
    public async Task MalformedRequests_AreRefused_AndTheCaKeepsServing()
    {
        foreach (byte[] payload in new[] { "not json"u8.ToArray(), """{"kind":"join","extra":1}"""u8.ToArray(), """{"kind":"mint"}"""u8.ToArray() })
        {
            await using SslStream tls = await RawConnectAsync();
            await CaProtocol.WriteAsync(tls, payload, default);
            byte[]? answer = await CaProtocol.ReadAsync(tls, CaProtocol.MaxResponseBytes, default);
            Assert.NotNull(CaProtocol.ParseResponse(answer!).Error);
        }

        // An oversized length: the connection is dropped without an answer.
        await using (SslStream tls = await RawConnectAsync())
        {
            await tls.WriteAsync(new byte[] { 0x7f, 0, 0, 0 });
            Assert.Null(await CaProtocol.ReadAsync(tls, CaProtocol.MaxResponseBytes, default).WaitAsync(TimeSpan.FromSeconds(5)));
        }

        Assert.Equal(3, _ca.Server.RefusedCount);
        await JoinAsync("node-a");
    }

    private async Task<SslStream> RawConnectAsync()
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(_ca.EndPoint);
        var tls = new SslStream(new System.Net.Sockets.NetworkStream(socket, ownsSocket: true));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "ca",
            RemoteCertificateValidationCallback = (_, cert, chain, _) =>
                new PeerCertificateVerifier(CaHarness.TrustDomain, () => _ca.Ca.TrustBundle.Roots).TryVerify(cert, chain, out _, out _),
        });
        return tls;
    }

    internal static int FreePort()
    {
        using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    public async Task DisposeAsync() => await _ca.DisposeAsync();

    [Fact]
    public void NodeIdentity_RoundTrips_AndRefusesLookalikes()
    {
        SpiffeId node = MeshIdentities.Node("cluster.local", "node-a.zone1");
        Assert.Equal("spiffe://cluster.local/ns/nodemesh-system/sa/node.node-a.zone1", node.Uri);
        Assert.True(MeshIdentities.TryGetNodeName(node, out string? name));
        Assert.Equal("node-a.zone1", name);
        Assert.False(MeshIdentities.TryGetNodeName(SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/nodes.a"), out _));
        Assert.False(MeshIdentities.TryGetNodeName(SpiffeId.Parse("spiffe://cluster.local/ns/other/sa/node.a"), out _));
        Assert.False(MeshIdentities.TryGetNodeName(MeshIdentities.Ca("cluster.local"), out _));
        Assert.Throws<ArgumentException>(() => MeshIdentities.Node("cluster.local", "Node"));
    }
}
