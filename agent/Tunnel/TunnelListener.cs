using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using NodeMesh.Identity;
using NodeMesh.Interop;
using NodeMesh.Sockets;
using NodeMesh.Telemetry;

namespace NodeMesh.Tunnel;

/// <summary>
/// The agent's tunnel listener (15008): TLS 1.3 only, a client certificate required and verified against the
/// trust bundle, the caller's SPIFFE id taken from it; then the connection's flows go to the handler it was
/// given (the inbound proxy: the tunnel does not reach up into the proxy layer).
/// </summary>
internal sealed partial class TunnelListener : IAsyncDisposable
{
    /// <summary>Serves the flows of one accepted connection until it ends; <paramref name="peerAddress"/> is where it comes from.</summary>
    public delegate Task ConnectionHandler(TunnelConnection connection, IPAddress? peerAddress, CancellationToken cancellationToken);

    /// <summary>A peer that has not finished its handshake by then is cut off (a dialling agent gives up sooner).</summary>
    internal static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Handshakes in progress at once, and from one address. A node dials one connection per (source identity,
    /// peer) and shares it, so even a burst of new identities on one node stays far below the per-address bound;
    /// 1,000 idle sockets from one host take 64 slots for 5 s, and everyone else still gets in.
    /// </summary>
    internal const int MaxPendingHandshakes = 512;

    internal const int MaxPendingHandshakesPerAddress = 64;

    private readonly Socket _listener;
    private readonly ICertificateProvider _certificates;
    private readonly PeerCertificateVerifier _verifier;
    private readonly ConnectionHandler _serve;
    private readonly MeshMetrics _metrics;
    private readonly SpiffeId _localIdentity;
    private readonly TunnelOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<TunnelConnection, byte> _connections = new();
    private readonly PendingConnectionLimit _handshakes = new(MaxPendingHandshakes, MaxPendingHandshakesPerAddress);

    // Every rejection is counted; the log gets the first, then at most one a period, so a hostile peer cannot flood it.
    private readonly LogThrottle _rejections = new(AcceptFailures.LogInterval);
    private Task? _acceptLoop;

    // Set by GoAwayAsync: (drain, reason) for connections whose handshake ends after it.
    private (TimeSpan Drain, string Reason)? _goingAway;

    public TunnelListener(IPEndPoint endPoint, ICertificateProvider certificates, PeerCertificateVerifier verifier, ConnectionHandler serve,
        MeshMetrics metrics, SpiffeId localIdentity, TunnelOptions options, ILogger<TunnelListener> logger)
    {
        _options = options;
        _certificates = certificates;
        _verifier = verifier;
        _serve = serve;
        _metrics = metrics;
        _localIdentity = localIdentity;
        _logger = logger;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        SocketOptions.SetReuseAddressOnly(_listener);
        _listener.Bind(endPoint);
        _listener.Listen(1024);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
    }

    public IPEndPoint EndPoint { get; }

    public int ConnectionCount => _connections.Count;

    /// <summary>The connections accepted and open now (for status and the admin API).</summary>
    public IReadOnlyList<Contracts.TunnelConnectionState> Snapshot() =>
        _connections.Keys.Select(c => new Contracts.TunnelConnectionState { PeerIdentity = c.PeerIdentity.Uri, LocalIdentity = c.LocalIdentity.Uri, Streams = c.LiveAcceptedStreams })
            .OrderBy(c => c.PeerIdentity, StringComparer.Ordinal).ToList();

    public void Start() => _acceptLoop = AcceptLoopAsync();

    private Task AcceptLoopAsync() =>
        AcceptLoop.RunAsync(_listener, HandleAsync, new AcceptFailures("tunnel", EndPoint, _logger, _metrics), _stopping.Token);

    /// <summary>Admits a connection to the handshake if the pending-handshake limits allow; closes it at once otherwise.</summary>
    private Task HandleAsync(Socket socket) =>
        _handshakes.TryAdmit(socket, "tunnel", _metrics, _logger, out IPEndPoint? remote) ? ServeAsync(socket, remote) : Task.CompletedTask;

    private async Task ServeAsync(Socket socket, IPEndPoint remoteEndPoint)
    {
        string remote = remoteEndPoint.ToString();
        SpiffeId? peer = null;
        string? rejection = null;
        PeerRejection rejectedAs = PeerRejection.None;
        bool alpn = false;
        bool pending = true;
        bool authenticated = false;
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            socket.NoDelay = true;
            SocketOptions.SetAbortOnClose(socket);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(HandshakeTimeout);
            try
            {
                SslStreamCertificateContext serverCertificate = await _certificates.GetNodeCertificateAsync(timeout.Token);
                await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
                {
                    ServerCertificateContext = serverCertificate,
                    ClientCertificateRequired = true,
                    EnabledSslProtocols = TunnelConnection.Protocols,
                    ApplicationProtocols = [TunnelConnection.ApplicationProtocol],
                    CipherSuitesPolicy = TunnelCipherSuites.Policy,
                    CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                    CertificateChainPolicy = _verifier.CreateChainPolicy(),
                    RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                    {
                        if (_verifier.TryVerify(presented, chain, out SpiffeId? id, out string? reason, out rejectedAs))
                        {
                            peer = id;
                            return true;
                        }

                        rejection = reason;
                        return false;
                    },
                }, timeout.Token);
            }
            catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
            {
                _metrics.ConnectionShed("tunnel", "handshake-timeout");
                throw;
            }
            finally
            {
                pending = false;
                _handshakes.Exit(remoteEndPoint.Address);
            }

            if (tls.NegotiatedApplicationProtocol != TunnelConnection.ApplicationProtocol)
            {
                alpn = true;
                throw new AuthenticationException($"caller {peer} does not speak {TunnelConnection.ApplicationProtocol} (ALPN)");
            }

            authenticated = true;
            TunnelConnection connection = TunnelConnection.Accepted(socket, tls, _localIdentity, peer!, _options);
            _connections.TryAdd(connection, 0);
            Log.Accepted(_logger, remote, peer!.Uri);
            if (_goingAway is { } goingAway)
            {
                // Its handshake outlasted the listener: it drains with the others, taking no new streams.
                _ = connection.GoAwayAsync(goingAway.Drain, goingAway.Reason);
            }

            try
            {
                await _serve(connection, (socket.RemoteEndPoint as IPEndPoint)?.Address, _stopping.Token);
                await connection.Completion.WaitAsync(_stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            finally
            {
                _connections.TryRemove(connection, out _);
                await connection.DisposeAsync();
            }
        }
        catch (AuthenticationException ex)
        {
            _metrics.TunnelHandshakeFailed("inbound", HandshakeFailure.Classify(ex, rejectedAs, alpn));
            if (_rejections.ShouldLog(out int held))
            {
                Log.Rejected(_logger, remote, rejection ?? ex.Message, held);
            }
            await tls.DisposeAsync();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException or ObjectDisposedException or CertificateUnavailableException
            or InteropException)
        {
            if (!authenticated && !_stopping.IsCancellationRequested)
            {
                _metrics.TunnelHandshakeFailed("inbound", HandshakeFailure.Classify(ex, rejectedAs, alpn));
            }

            Log.HandshakeFailed(_logger, remote, ex.Message);
            await tls.DisposeAsync();
        }
        finally
        {
            if (pending)
            {
                _handshakes.Exit(remoteEndPoint.Address);
            }
        }
    }

    /// <summary>
    /// Stops accepting (a peer's new dial is refused at once, so its flows fail fast or go elsewhere instead of
    /// being cut when the drain ends), sends GOAWAY on every accepted connection and waits up to
    /// <paramref name="drain"/> for their flows to end.
    /// </summary>
    public Task GoAwayAsync(TimeSpan drain, string reason)
    {
        _goingAway = (drain, reason);
        _listener.Dispose();
        return Task.WhenAll(_connections.Keys.Select(c => c.GoAwayAsync(drain, reason)));
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Dispose();
        if (_acceptLoop is not null)
        {
            await _acceptLoop;
        }

        foreach (TunnelConnection connection in _connections.Keys)
        {
            await connection.DisposeAsync();
        }

        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 310, Level = LogLevel.Information, Message = "tunnel from {Remote} accepted, caller {PeerIdentity}")]
        public static partial void Accepted(ILogger logger, string remote, string peerIdentity);

        [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "tunnel from {Remote} rejected: {Reason} ({Held} more rejected since the last report)")]
        public static partial void Rejected(ILogger logger, string remote, string reason, int held);

        [LoggerMessage(EventId = 312, Level = LogLevel.Debug, Message = "tunnel from {Remote} failed during handshake: {Error}")]
        public static partial void HandshakeFailed(ILogger logger, string remote, string error);
    }
}
