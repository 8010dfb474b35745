using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Nerdbank.Streams;
using NodeMesh.Identity;
using NodeMesh.Interop;

namespace NodeMesh.Tunnel;

/// <summary>
/// One mutually authenticated TLS 1.3 connection between two agents, carrying many flows as multiplexed
/// channels. The client side always presents the source workload's certificate, so every flow on a
/// connection belongs to that one identity.
/// </summary>
internal sealed class TunnelConnection : IAsyncDisposable
{
    internal const string FlowChannelName = "f";
    internal const uint TunnelMark = 0x539;

    private readonly Socket _socket;
    private readonly SslStream _tls;
    private readonly MultiplexingStream _mux;
    private int _activeFlows;
    private long _idleSinceTicks;
    private int _disposed;

    private TunnelConnection(Socket socket, SslStream tls, MultiplexingStream mux, SpiffeId localIdentity, SpiffeId peerIdentity)
    {
        _socket = socket;
        _tls = tls;
        _mux = mux;
        LocalIdentity = localIdentity;
        PeerIdentity = peerIdentity;
        _idleSinceTicks = Environment.TickCount64;
    }

    public SpiffeId LocalIdentity { get; }

    public SpiffeId PeerIdentity { get; }

    public int ActiveFlows => Volatile.Read(ref _activeFlows);

    public bool IsAlive => Volatile.Read(ref _disposed) == 0 && !_mux.Completion.IsCompleted;

    public Task Completion => _mux.Completion;

    /// <summary>Milliseconds since the last flow ended, or 0 while flows are active.</summary>
    public long IdleMilliseconds => ActiveFlows > 0 ? 0 : Environment.TickCount64 - Volatile.Read(ref _idleSinceTicks);

    public static MultiplexingStream.Options MuxOptions() => new()
    {
        ProtocolMajorVersion = 3,
        // Enough credit that one flow can fill a fast link without waiting for window updates.
        DefaultChannelReceivingWindowSize = 4 * 1024 * 1024,
    };

    public static SslProtocols Protocols => SslProtocols.Tls13;

    /// <summary>Dials a peer agent as <paramref name="identity"/> and checks the peer is an agent of this mesh.</summary>
    public static async Task<TunnelConnection> ConnectAsync(
        IPEndPoint peer,
        SpiffeId identity,
        SslStreamCertificateContext certificate,
        PeerCertificateVerifier verifier,
        SpiffeId expectedPeer,
        TimeSpan timeout,
        CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            SocketOptions.SetMark(socket, TunnelMark);
            SocketOptions.SetAbortOnClose(socket);
            using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutSource.CancelAfter(timeout);
            await socket.ConnectAsync(peer, timeoutSource.Token);

            string? rejection = null;
            var tls = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
            var options = new SslClientAuthenticationOptions
            {
                TargetHost = peer.Address.ToString(),
                EnabledSslProtocols = Protocols,
                ClientCertificateContext = certificate,
                CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, presented, _, _) =>
                {
                    if (!verifier.TryVerify(presented, out SpiffeId? peerId, out string? reason))
                    {
                        rejection = reason;
                        return false;
                    }

                    if (peerId != expectedPeer)
                    {
                        rejection = $"peer presented {peerId}, expected {expectedPeer}";
                        return false;
                    }

                    return true;
                },
            };
            try
            {
                await tls.AuthenticateAsClientAsync(options, timeoutSource.Token);
            }
            catch (AuthenticationException ex) when (rejection is not null)
            {
                throw new AuthenticationException($"tunnel to {peer} refused: {rejection}", ex);
            }

            MultiplexingStream mux = await MultiplexingStream.CreateAsync(tls, MuxOptions(), timeoutSource.Token);
            return new TunnelConnection(socket, tls, mux, identity, expectedPeer);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Wraps a connection accepted and authenticated by the tunnel listener.</summary>
    public static async Task<TunnelConnection> AcceptedAsync(Socket socket, SslStream tls, SpiffeId localIdentity, SpiffeId peerIdentity, CancellationToken cancellationToken)
    {
        MultiplexingStream mux = await MultiplexingStream.CreateAsync(tls, MuxOptions(), cancellationToken);
        return new TunnelConnection(socket, tls, mux, localIdentity, peerIdentity);
    }

    /// <summary>Counts a flow against this connection if it has room; the caller releases it when the flow ends.</summary>
    public bool TryReserve(int maxFlows)
    {
        while (true)
        {
            int current = Volatile.Read(ref _activeFlows);
            if (current >= maxFlows || !IsAlive)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _activeFlows, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _activeFlows) == 0)
        {
            Volatile.Write(ref _idleSinceTicks, Environment.TickCount64);
        }
    }

    /// <summary>Opens a new flow channel (the peer accepts it in its listener loop).</summary>
    public async Task<IDuplexPipe> OpenFlowAsync(CancellationToken cancellationToken) =>
        await _mux.OfferChannelAsync(FlowChannelName, cancellationToken);

    /// <summary>Waits for the next flow the peer opens; null when the connection has ended.</summary>
    public async Task<MultiplexingStream.Channel?> AcceptFlowAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _mux.AcceptChannelAsync(FlowChannelName, cancellationToken);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or MultiplexingProtocolException or IOException or OperationCanceledException)
        {
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _mux.DisposeAsync();
        await _tls.DisposeAsync();
        _socket.Dispose();
    }
}
