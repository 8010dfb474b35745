using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using NodeMesh.Identity;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>
/// The tunnel protocol over a real TLS 1.3 connection on loopback: streams, credit, half-close, reset and
/// connection loss. (Namespaces and capture are covered by the integration tests.)
/// </summary>
public sealed class TunnelConnectionTests : IAsyncLifetime
{
    private readonly string _caDir = Path.Combine(Path.GetTempPath(), "nm-tun-" + Guid.NewGuid().ToString("N"));
    private CertificateAuthority _ca = null!;
    private EmbeddedCaCertificates _certificates = null!;
    private PeerCertificateVerifier _verifier = null!;
    private Socket _listener = null!;
    private TunnelConnection _client = null!;
    private TunnelConnection _server = null!;
    private SslStream _serverTls = null!;
    private readonly SpiffeId _web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");

    public async Task InitializeAsync()
    {
        _ca = CertificateAuthority.Create(_caDir, "cluster.local", TimeSpan.FromDays(1));
        _certificates = new EmbeddedCaCertificates(CertificateAuthority.Load(_caDir), TimeSpan.FromHours(1), MeshIdentities.Node("cluster.local", "node1"));
        _verifier = new PeerCertificateVerifier("cluster.local", () => _certificates.TrustBundle);
        (_client, _server) = await ConnectPairAsync(await _certificates.GetWorkloadCertificateAsync(_web, default));
    }

    private async Task<(TunnelConnection Client, TunnelConnection Server)> ConnectPairAsync(SslStreamCertificateContext clientCertificate, SpiffeId? expectedPeer = null,
        TunnelOptions? options = null)
    {
        _listener?.Dispose();
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        Task<TunnelConnection> accept = AcceptAsync();
        TunnelConnection client = await TunnelConnection.ConnectAsync((IPEndPoint)_listener.LocalEndPoint!, _web, clientCertificate, _verifier,
            expectedPeer ?? MeshIdentities.Node("cluster.local", "node1"), TimeSpan.FromSeconds(5), default, options);
        return (client, await accept);
    }

    private async Task<TunnelConnection> AcceptAsync()
    {
        Socket socket = await _listener.AcceptAsync();
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        SpiffeId? peer = null;
        await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = await _certificates.GetNodeCertificateAsync(default),
            ClientCertificateRequired = true,
            EnabledSslProtocols = SslProtocols.Tls13,
            ApplicationProtocols = [TunnelConnection.ApplicationProtocol],
            CipherSuitesPolicy = TunnelCipherSuites.Policy,
            RemoteCertificateValidationCallback = (_, cert, _, _) => _verifier.TryVerify(cert, out peer, out _),
        });
        _serverTls = tls;
        return TunnelConnection.Accepted(socket, tls, MeshIdentities.Node("cluster.local", "node1"), peer!);
    }

    private static FlowHeader Header(int port) => new(IPEndPoint.Parse($"10.0.0.2:{port}"), IPEndPoint.Parse("10.0.0.1:1000"), null);

    [Fact]
    public async Task Server_SeesCallerIdentity_AndTheFlowHeader()
    {
        TunnelStream sent = await _client.OpenFlowAsync(Header(80), default);
        TunnelStream? received = await _server.AcceptFlowAsync(default);
        Assert.NotNull(received);
        Assert.Equal(_web, _server.PeerIdentity);
        Assert.Equal(Header(80), received.Header);
        Assert.Equal(sent.Id, received.Id);
    }

    [Fact]
    public void Tunnel_NegotiatesAes128Gcm_WhereTheCpuHasAesInstructions_ElseChaCha20()
    {
        TlsCipherSuite expected = TunnelCipherSuites.HasAesInstructions ? TlsCipherSuite.TLS_AES_128_GCM_SHA256 : TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256;
        Assert.Equal(expected, _serverTls.NegotiatedCipherSuite);
        Assert.Equal(TunnelConnection.ApplicationProtocol, _serverTls.NegotiatedApplicationProtocol);
    }

    [Fact]
    public async Task ManyStreams_CarryTheirOwnBytes_BeyondTheWindow()
    {
        const int streams = 20;
        const int size = 3 * TunnelStream.InitialWindow + 12345;
        var payloads = Enumerable.Range(0, streams).Select(i => RandomNumberGenerator.GetBytes(size)).ToArray();
        var opened = new TunnelStream[streams];
        for (int i = 0; i < streams; i++)
        {
            opened[i] = await _client.OpenFlowAsync(Header(1000 + i), default);
        }

        var receivers = new List<Task<(int, byte[])>>();
        for (int i = 0; i < streams; i++)
        {
            TunnelStream accepted = (await _server.AcceptFlowAsync(default))!;
            receivers.Add(ReadAllAsync(accepted));
        }

        await Task.WhenAll(opened.Select((s, i) => SendAllAsync(s, payloads[i])));
        foreach ((int port, byte[] bytes) in await Task.WhenAll(receivers))
        {
            Assert.Equal(payloads[port - 1000], bytes);
        }
    }

    [Fact]
    public async Task Reset_FailsTheOtherSide_AndOtherStreamsContinue()
    {
        TunnelStream doomed = await _client.OpenFlowAsync(Header(1), default);
        TunnelStream kept = await _client.OpenFlowAsync(Header(2), default);
        TunnelStream doomedServer = (await _server.AcceptFlowAsync(default))!;
        TunnelStream keptServer = (await _server.AcceptFlowAsync(default))!;

        await doomed.ResetAsync(TunnelError.Cancelled);
        await Assert.ThrowsAsync<IOException>(async () => await doomedServer.Input.ReadAsync());

        byte[] payload = RandomNumberGenerator.GetBytes(100_000);
        Task<(int, byte[])> read = ReadAllAsync(keptServer);
        await SendAllAsync(kept, payload);
        Assert.Equal(payload, (await read).Item2);
    }

    [Fact]
    public async Task ConnectionLoss_FailsEveryStream_NeverACleanEnd()
    {
        TunnelStream stream = await _client.OpenFlowAsync(Header(1), default);
        TunnelStream serverSide = (await _server.AcceptFlowAsync(default))!;
        await _client.DisposeAsync();
        await Assert.ThrowsAsync<IOException>(async () =>
        {
            while (true)
            {
                System.IO.Pipelines.ReadResult r = await serverSide.Input.ReadAsync();
                Assert.False(r.IsCompleted, "a lost connection must not look like an orderly end of stream");
                serverSide.Input.AdvanceTo(r.Buffer.End);
            }
        });
        await _server.Completion.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.False(_server.IsAlive);
        _ = stream;
    }

    [Fact]
    public async Task UntrustedClientCertificate_IsRefused()
    {
        string otherDir = _caDir + "-other";
        using var other = CertificateAuthority.Create(otherDir, "cluster.local", TimeSpan.FromDays(1));
        using X509Certificate2 foreign = other.Issue(_web, TimeSpan.FromHours(1));
        await Assert.ThrowsAnyAsync<Exception>(() => ConnectPairAsync(SslStreamCertificateContext.Create(foreign, null)));
        Directory.Delete(otherDir, true);
    }

    [Fact]
    public async Task PeerWithAnotherIdentityThanExpected_IsRefused_AndCountedAsAnOutboundIdentityFailure()
    {
        using var metrics = new NodeMesh.Telemetry.MeshMetrics();
        using var failures = new MetricCollector<long>(metrics.Meter, "nodemesh_tunnel_handshake_failures_total");
        SslStreamCertificateContext web = await _certificates.GetWorkloadCertificateAsync(_web, default);
        Exception refused = await Assert.ThrowsAnyAsync<Exception>(() =>
            ConnectPairAsync(web, MeshIdentities.Node("cluster.local", "node2"), new TunnelOptions { Metrics = metrics }));

        Assert.Contains("expected spiffe://cluster.local/ns/nodemesh-system/sa/node.node2", refused.Message, StringComparison.Ordinal);
        CollectedMeasurement<long> failure = Assert.Single(failures.GetMeasurementSnapshot());
        Assert.Equal(1, failure.Value);
        Assert.True(failure.MatchesTags(new KeyValuePair<string, object?>("direction", "outbound"), new KeyValuePair<string, object?>("reason", "identity")),
            string.Join(", ", failure.Tags));
    }

    [Theory]
    [InlineData(nameof(PeerRejection.Untrusted), false, "untrusted")]
    [InlineData(nameof(PeerRejection.NoCertificate), false, "no-certificate")]
    [InlineData(nameof(PeerRejection.Identity), false, "identity")]
    [InlineData(nameof(PeerRejection.None), true, "alpn")]
    public void HandshakeFailure_IsNamedByTheCertificateCheckFirst(string rejection, bool alpn, string reason) =>
        Assert.Equal(reason, HandshakeFailure.Classify(new AuthenticationException("refused"), Enum.Parse<PeerRejection>(rejection), alpn));

    [Fact]
    public void HandshakeFailure_WithoutARefusal_IsNamedByTheException()
    {
        Assert.Equal("timeout", HandshakeFailure.Classify(new OperationCanceledException(), PeerRejection.None, alpn: false));
        Assert.Equal("closed", HandshakeFailure.Classify(new IOException("reset"), PeerRejection.None, alpn: false));
        Assert.Equal("tls", HandshakeFailure.Classify(new AuthenticationException("no shared cipher"), PeerRejection.None, alpn: false));
        Assert.Equal("local-certificate", HandshakeFailure.Classify(new CertificateUnavailableException("not issued yet"), PeerRejection.None, alpn: false));
        Assert.Contains("local-certificate", HandshakeFailure.All);
    }

    [Fact]
    public async Task ExpiredClientCertificate_IsRefused()
    {
        // Signed by the right CA, for the right identity, but no longer valid.
        using var caKey = ECDsa.Create();
        caKey.ImportFromPem(await File.ReadAllTextAsync(Path.Combine(_caDir, "ca.key")));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(_web.Uri));
        request.CertificateExtensions.Add(san.Build(true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        using X509Certificate2 signed = request.Create(_ca.Root.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey),
            DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(-1), [9, 9, 9]);
        using X509Certificate2 expired = X509CertificateLoader.LoadPkcs12(signed.CopyWithPrivateKey(key).Export(X509ContentType.Pkcs12), null);
        SslStreamCertificateContext context = SslStreamCertificateContext.Create(expired, null, offline: true);
        Exception refused = await Assert.ThrowsAnyAsync<Exception>(() => ConnectPairAsync(context));
        Assert.True(refused is AuthenticationException or IOException, $"expected the handshake to fail, got {refused}");
    }

    [Fact]
    public async Task SixteenBulkFlows_MostResetAbruptlyAtOnce_ManyCycles_NeverBreakTheSharedConnection()
    {
        TunnelStream longFlow = await _client.OpenFlowAsync(Header(1), default);
        TunnelStream longServed = (await _server.AcceptFlowAsync(default))!;
        byte[] payload = RandomNumberGenerator.GetBytes(24 * 1024 * 1024);
        Task<(int, byte[])> received = ReadAllAsync(longServed);
        Task sending = SendAllAsync(longFlow, payload);
        for (int cycle = 0; cycle < 20; cycle++)
        {
            var flows = new List<TunnelStream>();
            var served = new List<TunnelStream>();
            for (int i = 0; i < 15; i++)
            {
                flows.Add(await _client.OpenFlowAsync(Header(2 + i), default));
                served.Add((await _server.AcceptFlowAsync(default))!);
            }

            using var abort = new CancellationTokenSource();
            Task[] drains = served.Select(s => DrainQuietlyAsync(s)).ToArray();
            Task[] writers = flows.Select(f => WriteUntilStoppedAsync(f, abort.Token)).ToArray();
            await Task.Delay(30);

            // Every writer is cancelled in the middle of whatever it was doing, and its stream reset, all at once.
            await abort.CancelAsync();
            await Task.WhenAll(flows.Select(f => f.ResetAsync(TunnelError.Cancelled).AsTask()));
            await Task.WhenAll(writers);
            await Task.WhenAll(drains);
            served.ForEach(s => s.HandlerDone());
            Assert.True(_client.IsAlive && _server.IsAlive, $"cycle {cycle}: the shared connection broke: {_client.CloseReason} / {_server.CloseReason}");
        }

        await sending;
        Assert.Equal(payload, (await received).Item2);
        Assert.Null(_client.CloseReason);
        Assert.Null(_server.CloseReason);
    }

    private static async Task WriteUntilStoppedAsync(TunnelStream stream, CancellationToken stop)
    {
        byte[] chunk = RandomNumberGenerator.GetBytes(FrameHeader.MaxPayload);
        try
        {
            while (true)
            {
                await stream.WriteAsync(chunk, stop);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // Cancelled or reset: what this test does to it.
        }
    }

    private static async Task DrainQuietlyAsync(TunnelStream stream)
    {
        try
        {
            await ReadAllAsync(stream);
        }
        catch (IOException)
        {
            // Reset by the sender.
        }
    }

    private static Task SendAllAsync(TunnelStream stream, byte[] payload) => TunnelStreams.SendAllAsync(stream, payload);

    private static async Task<(int Port, byte[] Bytes)> ReadAllAsync(TunnelStream stream) =>
        (stream.Header!.Value.Destination.Port, await TunnelStreams.ReadAllAsync(stream));

    public async Task DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        _listener.Dispose();
        _certificates.Dispose();
        _ca.Dispose();
        Directory.Delete(_caDir, true);
    }
}
