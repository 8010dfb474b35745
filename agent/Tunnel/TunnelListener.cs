using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using NodeMesh.Identity;
using NodeMesh.Interop;
using NodeMesh.Proxy.Inbound;
using NodeMesh.Telemetry;

namespace NodeMesh.Tunnel;

/// <summary>
/// The agent's tunnel listener (15008): TLS 1.3 only, a client certificate required and verified against the
/// trust bundle, the caller's SPIFFE id taken from it; then the connection's flows go to the inbound proxy.
/// </summary>
internal sealed partial class TunnelListener : IAsyncDisposable
{
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _listener;
    private readonly ICertificateProvider _certificates;
    private readonly PeerCertificateVerifier _verifier;
    private readonly InboundTunnelProxy _inbound;
    private readonly MeshMetrics _metrics;
    private readonly SpiffeId _localIdentity;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<TunnelConnection, byte> _connections = new();
    private Task? _acceptLoop;

    public TunnelListener(IPEndPoint endPoint, ICertificateProvider certificates, PeerCertificateVerifier verifier, InboundTunnelProxy inbound,
        MeshMetrics metrics, SpiffeId localIdentity, ILogger<TunnelListener> logger)
    {
        _certificates = certificates;
        _verifier = verifier;
        _inbound = inbound;
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

    public void Start() => _acceptLoop = AcceptLoopAsync();

    private Task AcceptLoopAsync() =>
        Sockets.AcceptLoop.RunAsync(_listener, HandleAsync, error => Log.AcceptFailed(_logger, error.ToString()), _stopping.Token);

    private async Task HandleAsync(Socket socket)
    {
        string remote = socket.RemoteEndPoint?.ToString() ?? "?";
        SpiffeId? peer = null;
        string? rejection = null;
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        try
        {
            socket.NoDelay = true;
            SocketOptions.SetAbortOnClose(socket);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(HandshakeTimeout);
            SslStreamCertificateContext serverCertificate = await _certificates.GetNodeCertificateAsync(timeout.Token);
            await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = serverCertificate,
                ClientCertificateRequired = true,
                EnabledSslProtocols = TunnelConnection.Protocols,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, presented, chain, _) =>
                {
                    if (_verifier.TryVerify(presented, chain, out SpiffeId? id, out string? reason))
                    {
                        peer = id;
                        return true;
                    }

                    rejection = reason;
                    return false;
                },
            }, timeout.Token);

            TunnelConnection connection = TunnelConnection.Accepted(socket, tls, _localIdentity, peer!);
            _connections.TryAdd(connection, 0);
            Log.Accepted(_logger, remote, peer!.Uri);
            try
            {
                await _inbound.ServeAsync(connection, (socket.RemoteEndPoint as IPEndPoint)?.Address, _stopping.Token);
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
            _metrics.TunnelRejected();
            Log.Rejected(_logger, remote, rejection ?? ex.Message);
            await tls.DisposeAsync();
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or SocketException or ObjectDisposedException or CertificateUnavailableException)
        {
            Log.HandshakeFailed(_logger, remote, ex.Message);
            await tls.DisposeAsync();
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

        [LoggerMessage(EventId = 311, Level = LogLevel.Warning, Message = "tunnel from {Remote} rejected: {Reason}")]
        public static partial void Rejected(ILogger logger, string remote, string reason);

        [LoggerMessage(EventId = 312, Level = LogLevel.Debug, Message = "tunnel from {Remote} failed during handshake: {Error}")]
        public static partial void HandshakeFailed(ILogger logger, string remote, string error);

        [LoggerMessage(EventId = 313, Level = LogLevel.Warning, Message = "tunnel accept failed: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string error);
    }
}
