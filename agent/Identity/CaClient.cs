using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>A request to the CA failed: it refused (<see cref="Refused"/>, with its reason) or could not be reached or understood.</summary>
internal sealed class CaRequestException(string message, bool refused, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The CA answered and said no; retrying the same request later only helps if the CA's view changes.</summary>
    public bool Refused { get; } = refused;
}

/// <summary>A certificate the CA issued, with its private key (made in this process), its chain and the mesh's roots.</summary>
internal sealed class IssuedCertificate(X509Certificate2 certificate, X509Certificate2Collection chain, X509Certificate2Collection trustBundle)
{
    public X509Certificate2 Certificate { get; } = certificate;

    public X509Certificate2Collection Chain { get; } = chain;

    public X509Certificate2Collection TrustBundle { get; } = trustBundle;

    /// <summary>A TLS context that sends the chain in the handshake.</summary>
    public SslStreamCertificateContext CreateContext() => SslStreamCertificateContext.Create(Certificate, Chain, offline: true);
}

/// <summary>
/// The agent's side of the CA protocol (<see cref="CaProtocol"/>). Every request uses a fresh P-256 key made in
/// memory; the CA must present <c>spiffe://&lt;td&gt;/ns/nodemesh-system/sa/ca</c> chaining to the trust bundle,
/// and what it returns is checked (our key, exactly the identity asked for, chaining to the returned roots)
/// before it is used.
/// </summary>
internal sealed class CaClient
{
    private readonly EndPoint _server;
    private readonly string _trustDomain;
    private readonly Func<X509Certificate2Collection> _trustBundle;
    private readonly TimeSpan _timeout;
    private readonly PeerCertificateVerifier _verifier;
    private readonly SpiffeId _caIdentity;

    /// <param name="server">The CA's address: an <see cref="IPEndPoint"/> or a <see cref="DnsEndPoint"/>.</param>
    /// <param name="trustBundle">The roots the CA's certificate must chain to (from config at first, then as the CA sends them).</param>
    public CaClient(EndPoint server, string trustDomain, Func<X509Certificate2Collection> trustBundle, TimeSpan timeout)
    {
        _server = server;
        _trustDomain = trustDomain;
        _trustBundle = trustBundle;
        _timeout = timeout;
        _verifier = new PeerCertificateVerifier(trustDomain, trustBundle);
        _caIdentity = MeshIdentities.Ca(trustDomain);
    }

    public EndPoint Server => _server;

    public string TrustDomain => _trustDomain;

    /// <summary>Joins the mesh as <paramref name="node"/> with a join token; returns the node certificate.</summary>
    public Task<IssuedCertificate> JoinAsync(string node, string token, CancellationToken cancellationToken)
    {
        SpiffeId identity = MeshIdentities.Node(_trustDomain, node);
        return RequestAsync(identity, clientCertificate: null, key => new CaRequest
        {
            Kind = CaRequestKinds.Join,
            Node = node,
            Token = token,
            Csr = SigningRequests.Create(key, identity),
        }, cancellationToken);
    }

    /// <summary>Asks for a certificate for <paramref name="identity"/>, authenticated by this node's certificate.</summary>
    public Task<IssuedCertificate> RequestCertificateAsync(SpiffeId identity, SslStreamCertificateContext nodeCertificate, CancellationToken cancellationToken) =>
        RequestAsync(identity, nodeCertificate, key => new CaRequest
        {
            Kind = CaRequestKinds.Certificate,
            Identity = identity.Uri,
            Csr = SigningRequests.Create(key, identity),
        }, cancellationToken);

    private async Task<IssuedCertificate> RequestAsync(SpiffeId identity, SslStreamCertificateContext? clientCertificate,
        Func<ECDsa, CaRequest> build, CancellationToken cancellationToken)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        byte[] request = CaProtocol.Serialize(build(key));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_timeout);

        CaResponse response;
        bool handshakeDone = false;
        string? rejection = null;
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(_server, timeout.Token);
            await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            try
            {
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = "nodemesh-ca",
                    EnabledSslProtocols = SslProtocols.Tls13,
                    ClientCertificateContext = clientCertificate,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    CertificateChainPolicy = _verifier.CreateChainPolicy(),
                    AllowTlsResume = false,
                    RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                    {
                        if (!_verifier.TryVerify(presented, chain, out SpiffeId? peer, out string? reason))
                        {
                            rejection = reason;
                            return false;
                        }

                        if (peer != _caIdentity)
                        {
                            rejection = $"the CA presented {peer}, expected {_caIdentity}";
                            return false;
                        }

                        return true;
                    },
                }, timeout.Token);
            }
            catch (AuthenticationException ex) when (rejection is not null)
            {
                throw new CaRequestException($"CA at {_server} is not trusted: {rejection}", refused: false, ex);
            }

            handshakeDone = true;
            await CaProtocol.WriteAsync(tls, request, timeout.Token);
            byte[] payload = await CaProtocol.ReadAsync(tls, CaProtocol.MaxResponseBytes, timeout.Token)
                ?? throw new CaRequestException($"CA at {_server} closed the connection without answering", refused: false);
            response = CaProtocol.ParseResponse(payload);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CaRequestException($"CA at {_server} did not answer within {_timeout.TotalSeconds:0.#} s", refused: false, ex);
        }
        catch (Exception ex) when (ex is SocketException or IOException or AuthenticationException or InvalidDataException)
        {
            // Under TLS 1.3 a server that refuses our certificate says so after our side of the handshake ended.
            string hint = handshakeDone && clientCertificate is not null ? " (the CA may not accept this node's certificate)" : "";
            throw new CaRequestException($"CA at {_server} unreachable or failed: {ex.Message}{hint}", refused: false, ex);
        }
        finally
        {
            socket.Dispose();
        }

        if (response.Error is not null)
        {
            throw new CaRequestException($"CA refused {identity}: {response.Error}", refused: true);
        }

        return Accept(response, identity, key);
    }

    /// <summary>Checks what the CA returned before anything uses it.</summary>
    private IssuedCertificate Accept(CaResponse response, SpiffeId identity, ECDsa key)
    {
        try
        {
            X509Certificate2Collection roots = TrustBundle.ParsePem(response.TrustBundle ?? "");
            X509Certificate2Collection chain = [];
            if (!string.IsNullOrEmpty(response.Chain))
            {
                chain.ImportFromPem(response.Chain);
            }

            using X509Certificate2 leaf = X509Certificate2.CreateFromPem(response.Certificate ?? "");
            using ECDsa? leafKey = leaf.GetECDsaPublicKey();
            if (leafKey is null || !leafKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
            {
                throw new CaRequestException($"CA returned a certificate for another key than ours for {identity}", refused: false);
            }

            var verifier = new PeerCertificateVerifier(_trustDomain, () => roots);
            if (!verifier.TryVerify(leaf, chain, out SpiffeId? issuedFor, out string? reason))
            {
                throw new CaRequestException($"CA returned an unusable certificate for {identity}: {reason}", refused: false);
            }

            if (issuedFor != identity)
            {
                throw new CaRequestException($"CA returned a certificate for {issuedFor}, asked for {identity}", refused: false);
            }

            using X509Certificate2 withKey = leaf.CopyWithPrivateKey(key);

            // Round-trip through PKCS#12 (in memory) so the key is usable by OpenSSL-backed SslStream on every platform.
            X509Certificate2 usable = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
            return new IssuedCertificate(usable, chain, roots);
        }
        catch (Exception ex) when (ex is CryptographicException or InvalidDataException)
        {
            throw new CaRequestException($"CA returned a malformed answer for {identity}: {ex.Message}", refused: false, ex);
        }
    }
}
