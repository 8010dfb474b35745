using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using NodeMesh.Interop;
using NodeMesh.Sockets;
using NodeMesh.Telemetry;

namespace NodeMesh.Identity;

/// <summary>Settings of the CA service.</summary>
internal sealed record CaServerOptions
{
    /// <summary>Lifetime of workload certificates (and of the CA service's own certificate).</summary>
    public TimeSpan LeafLifetime { get; init; } = CertificateAuthority.DefaultLeafLifetime;

    /// <summary>Lifetime of node certificates.</summary>
    public TimeSpan NodeLifetime { get; init; } = CertificateAuthority.DefaultLeafLifetime;

    /// <summary>Whole budget of one connection: handshake, request, answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The TLS handshake's share of <see cref="RequestTimeout"/>: a caller that has not finished it by then is cut off.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Connections served at once; more are closed at once (the clients retry with backoff).</summary>
    public int MaxConcurrentRequests { get; init; } = 64;

    /// <summary>
    /// The one identity of the reserved namespace besides the nodes' that may be issued: the gateway's (no workload
    /// holds it; the placement check decides which nodes get it). Null: none.
    /// </summary>
    public SpiffeId? GatewayIdentity { get; init; }

    /// <summary>Connections served at once from one source address, so one host's idle sockets cannot take every slot.</summary>
    public int MaxConcurrentRequestsPerAddress { get; init; } = 16;
}

/// <summary>One decision of the CA, for logs and metrics: what was asked, by whom, and the outcome.</summary>
/// <param name="Kind"><c>join</c>, <c>certificate</c>, or <c>handshake</c> (a client certificate refused before any request).</param>
internal sealed record CaDecision(string Kind, string Remote, string? Node, string? Identity, bool Issued, string? Reason);

/// <summary>
/// The CA service of an agent with the CA role. It presents <c>spiffe://&lt;td&gt;/ns/nodemesh-system/sa/ca</c>
/// over TLS 1.3 and serves one request per connection:
/// <list type="bullet">
/// <item>join: no client certificate; a join token for the named node and a CSR get that node its node certificate;</item>
/// <item>certificate: the caller authenticates with its node certificate; it gets a certificate for an identity only
/// if that identity is placed on the caller's node (or is the node's own identity, to renew it).</item>
/// </list>
/// Every refusal is logged with its reason, counted, and raised as <see cref="Decided"/>.
/// </summary>
internal sealed partial class CaServer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CertificateAuthority _ca;
    private readonly JoinTokens _tokens;
    private readonly Func<string, SpiffeId, string?> _whyNotPlaced;
    private readonly Func<string, SpiffeId, CancellationToken, Task>? _awaitPlacement;
    private readonly CaServerOptions _options;
    private readonly ILogger _logger;
    private readonly string _trustDomain;
    private readonly PeerCertificateVerifier _verifier;
    private readonly PendingConnectionLimit _slots;
    private readonly MeshMetrics? _metrics;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _serverCertificateLock = new();
    private SslStreamCertificateContext? _serverCertificate;
    private DateTimeOffset _serverCertificateRenewAt;
    private Task? _acceptLoop;
    private long _issued;
    private long _refused;

    /// <param name="whyNotPlaced">
    /// Null when a workload with the identity runs on the node (by node name) according to the mesh's registry
    /// (and the node may hold it), else why not. The CA issues workload identities only to the node they are placed on.
    /// </param>
    /// <param name="awaitPlacement">
    /// Waits (bounded) for the registry to place an identity not placed yet: a workload just added on its node is
    /// published there and reaches this CA's registry a moment later; its node asks for the certificate at once.
    /// </param>
    public CaServer(IPEndPoint endPoint, string trustDomain, CertificateAuthority ca, JoinTokens tokens, Func<string, SpiffeId, string?> whyNotPlaced,
        CaServerOptions options, ILogger<CaServer> logger, MeshMetrics? metrics = null, Func<string, SpiffeId, CancellationToken, Task>? awaitPlacement = null)
    {
        _awaitPlacement = awaitPlacement;
        _metrics = metrics;
        _trustDomain = trustDomain;
        _ca = ca;
        _tokens = tokens;
        _whyNotPlaced = whyNotPlaced;
        _options = options;
        _logger = logger;
        _verifier = new PeerCertificateVerifier(trustDomain, () => ca.TrustBundle.Roots);
        _slots = new PendingConnectionLimit(options.MaxConcurrentRequests, options.MaxConcurrentRequestsPerAddress);
        _listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        SocketOptions.SetReuseAddressOnly(_listener);
        _listener.Bind(endPoint);
        _listener.Listen(256);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
    }

    /// <summary>Raised once per decision (issued or refused), on the connection's thread.</summary>
    public event Action<CaDecision>? Decided;

    public IPEndPoint EndPoint { get; }

    public long IssuedCount => Interlocked.Read(ref _issued);

    public long RefusedCount => Interlocked.Read(ref _refused);

    public void Start() => _acceptLoop ??= AcceptLoopAsync();

    private Task AcceptLoopAsync() =>
        AcceptLoop.RunAsync(_listener, AdmitAsync, new AcceptFailures("ca", EndPoint, _logger, _metrics), _stopping.Token);

    /// <summary>
    /// Bounded concurrency, overall and per source address: a connection beyond a limit is closed at once, not
    /// queued (every connection is unauthenticated until its request is read, so none may hold a slot for long).
    /// </summary>
    private Task AdmitAsync(Socket socket) =>
        _slots.TryAdmit(socket, "ca", _metrics, _logger, out IPEndPoint? remote) ? HandleAsync(socket, remote) : Task.CompletedTask;

    private async Task HandleAsync(Socket socket, IPEndPoint remoteEndPoint)
    {
        string remote = remoteEndPoint.ToString();
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            socket.NoDelay = true;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(_options.RequestTimeout);
            using var handshakeTimeout = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token);
            handshakeTimeout.CancelAfter(_options.HandshakeTimeout);
            SpiffeId? caller = null;
            string? rejection = null;
            try
            {
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = ServerCertificate(),
                    // Asked for, not required: a joining node has none yet. A certificate that is presented must verify.
                    ClientCertificateRequired = true,
                    EnabledSslProtocols = SslProtocols.Tls13,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    CertificateChainPolicy = _verifier.CreateChainPolicy(),
                    // Every request is a full handshake: the caller's whole chain is seen and checked each time.
                    AllowTlsResume = false,
                    RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                    {
                        if (presented is null)
                        {
                            return true;
                        }

                        if (_verifier.TryVerify(presented, chain, out SpiffeId? id, out string? reason))
                        {
                            caller = id;
                            return true;
                        }

                        rejection = reason;
                        return false;
                    },
                }, handshakeTimeout.Token);
            }
            catch (AuthenticationException ex)
            {
                Record(new CaDecision("handshake", remote, null, null, false, $"client certificate refused: {rejection ?? ex.Message}"));
                return;
            }
            catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
            {
                _metrics?.ConnectionShed("ca", "handshake-timeout");
                throw;
            }

            byte[]? payload = await CaProtocol.ReadAsync(tls, CaProtocol.MaxRequestBytes, timeout.Token);
            if (payload is null)
            {
                return;
            }

            CaResponse response;
            try
            {
                CaRequest request = CaProtocol.ParseRequest(payload);
                if (_awaitPlacement is not null && request is { Kind: CaRequestKinds.Certificate, Identity: { } asked } && caller is not null
                    && MeshIdentities.TryGetNodeName(caller, out string? node) && SpiffeId.TryParse(asked, out SpiffeId? identity, out _)
                    && identity != caller && identity.Namespace != MeshIdentities.Namespace && _whyNotPlaced(node, identity) is not null)
                {
                    await _awaitPlacement(node, identity, timeout.Token);
                }

                response = Decide(request, caller, remote);
            }
            catch (InvalidDataException ex)
            {
                response = Refuse(new CaDecision("invalid", remote, null, null, false, ex.Message));
            }

            await CaProtocol.WriteAsync(tls, CaProtocol.Serialize(response), timeout.Token);
            await tls.ShutdownAsync();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException or ObjectDisposedException or InvalidDataException)
        {
            Log.ConnectionFailed(_logger, remote, ex.Message);
        }
        catch (Exception ex)
        {
            // A bug, not a client's fault: keep serving others, and say so loudly.
            Log.Unexpected(_logger, remote, ex);
        }
        finally
        {
            await tls.DisposeAsync();
            _slots.Exit(remoteEndPoint.Address);
        }
    }

    /// <summary>What to answer <paramref name="request"/> from <paramref name="caller"/> (null: no client certificate). Pure but for issuing.</summary>
    internal CaResponse Decide(CaRequest request, SpiffeId? caller, string remote)
    {
        switch (request.Kind)
        {
            case CaRequestKinds.Join:
            {
                string? node = request.Node;
                string? printableNode = node is null ? null : SpiffeId.Printable(node);
                if (!MeshIdentities.IsNodeName(node))
                {
                    return Refuse(new CaDecision("join", remote, printableNode, null, false, $"'{printableNode}' is not a valid node name"));
                }

                SpiffeId identity = MeshIdentities.Node(_trustDomain, node);

                // The request is checked before the token is redeemed: a malformed one must not use up a single-use token.
                if (!SigningRequests.TryReadP256Key(request.Csr, out PublicKey? publicKey, out string? csrError))
                {
                    return Refuse(new CaDecision("join", remote, node, identity.Uri, false, csrError));
                }

                if (!_tokens.TryRedeem(request.Token, node, DateTimeOffset.UtcNow, out JoinToken? token, out string? tokenError))
                {
                    return Refuse(new CaDecision("join", remote, node, identity.Uri, false, tokenError));
                }

                Log.TokenAccepted(_logger, node, token.Id, remote);
                return Issue(new CaDecision("join", remote, node, identity.Uri, true, null), identity, publicKey, _options.NodeLifetime);
            }

            case CaRequestKinds.Certificate:
            {
                string? asked = request.Identity is null ? null : SpiffeId.Printable(request.Identity);
                if (caller is null)
                {
                    return Refuse(new CaDecision("certificate", remote, null, asked, false, "a node certificate is required to ask for certificates; join first"));
                }

                if (!MeshIdentities.TryGetNodeName(caller, out string? node))
                {
                    return Refuse(new CaDecision("certificate", remote, null, asked, false, $"caller {caller} is not a node"));
                }

                if (!SpiffeId.TryParse(request.Identity, out SpiffeId? identity, out string? parseError))
                {
                    return Refuse(new CaDecision("certificate", remote, node, asked, false, parseError));
                }

                if (identity.TrustDomain != _trustDomain)
                {
                    return Refuse(new CaDecision("certificate", remote, node, identity.Uri, false, $"{identity} is not in trust domain {_trustDomain}"));
                }

                if (identity == caller)
                {
                    return IssueFor(new CaDecision("certificate", remote, node, identity.Uri, true, null), identity, request.Csr, _options.NodeLifetime);
                }

                if (identity.Namespace == MeshIdentities.Namespace && identity != _options.GatewayIdentity)
                {
                    return Refuse(new CaDecision("certificate", remote, node, identity.Uri, false, $"namespace {MeshIdentities.Namespace} is reserved for the mesh"));
                }

                if (_whyNotPlaced(node, identity) is { } notPlaced)
                {
                    return Refuse(new CaDecision("certificate", remote, node, identity.Uri, false, notPlaced));
                }

                return IssueFor(new CaDecision("certificate", remote, node, identity.Uri, true, null), identity, request.Csr, _options.LeafLifetime);
            }

            default:
                return Refuse(new CaDecision("invalid", remote, null, null, false, $"unknown request kind '{SpiffeId.Printable(request.Kind ?? "null")}'"));
        }
    }

    private CaResponse IssueFor(CaDecision decision, SpiffeId identity, string? csr, TimeSpan lifetime) =>
        SigningRequests.TryReadP256Key(csr, out PublicKey? publicKey, out string? csrError)
            ? Issue(decision, identity, publicKey, lifetime)
            : Refuse(decision with { Issued = false, Reason = csrError });

    private CaResponse Issue(CaDecision decision, SpiffeId identity, PublicKey publicKey, TimeSpan lifetime)
    {
        X509Certificate2 certificate;
        try
        {
            certificate = _ca.Issue(identity, publicKey, lifetime);
        }
        catch (Exception ex) when (ex is CryptographicException or InvalidOperationException)
        {
            Log.IssueFailed(_logger, identity.Uri, ex.Message);
            return Refuse(decision with { Issued = false, Reason = "the CA cannot issue certificates now" });
        }

        using (certificate)
        {
            Record(decision);
            return new CaResponse
            {
                Certificate = certificate.ExportCertificatePem(),
                Chain = TrustBundle.ExportPem(_ca.Chain),
                TrustBundle = _ca.TrustBundle.ExportPem(),
            };
        }
    }

    private CaResponse Refuse(CaDecision decision)
    {
        Record(decision);
        return new CaResponse { Error = decision.Reason };
    }

    private void Record(CaDecision decision)
    {
        if (decision.Issued)
        {
            Interlocked.Increment(ref _issued);
            Log.Issued(_logger, decision.Kind, decision.Identity ?? "?", decision.Node ?? "?", decision.Remote);
        }
        else
        {
            Interlocked.Increment(ref _refused);
            Log.Refused(_logger, decision.Kind, decision.Identity ?? "-", decision.Node ?? "-", decision.Remote, decision.Reason ?? "?");
        }

        Decided?.Invoke(decision);
    }

    /// <summary>The CA service's own certificate, reissued (fresh key) at half its lifetime.</summary>
    private SslStreamCertificateContext ServerCertificate()
    {
        lock (_serverCertificateLock)
        {
            DateTimeOffset now = DateTimeOffset.UtcNow;
            if (_serverCertificate is null || now >= _serverCertificateRenewAt)
            {
                X509Certificate2 certificate = _ca.Issue(MeshIdentities.Ca(_trustDomain), _options.LeafLifetime);
                _serverCertificate = SslStreamCertificateContext.Create(certificate, _ca.Chain, offline: true);
                _serverCertificateRenewAt = now + ((certificate.NotAfter.ToUniversalTime() - now) / 2);
            }

            return _serverCertificate;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop;
        }

        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 700, Level = LogLevel.Information, Message = "CA issued {Identity} ({Kind}) to node {Node} at {Remote}")]
        public static partial void Issued(ILogger logger, string kind, string identity, string node, string remote);

        [LoggerMessage(EventId = 701, Level = LogLevel.Warning, Message = "CA refused {Kind} for {Identity} from node {Node} at {Remote}: {Reason}")]
        public static partial void Refused(ILogger logger, string kind, string identity, string node, string remote, string reason);

        [LoggerMessage(EventId = 702, Level = LogLevel.Information, Message = "CA accepted join token {TokenId} for node {Node} from {Remote}")]
        public static partial void TokenAccepted(ILogger logger, string node, string tokenId, string remote);

        [LoggerMessage(EventId = 703, Level = LogLevel.Debug, Message = "CA connection from {Remote} failed: {Error}")]
        public static partial void ConnectionFailed(ILogger logger, string remote, string error);

        [LoggerMessage(EventId = 705, Level = LogLevel.Error, Message = "CA cannot issue {Identity}: {Error}")]
        public static partial void IssueFailed(ILogger logger, string identity, string error);

        [LoggerMessage(EventId = 707, Level = LogLevel.Error, Message = "CA connection from {Remote} failed unexpectedly")]
        public static partial void Unexpected(ILogger logger, string remote, Exception exception);
    }
}
