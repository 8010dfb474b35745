using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Identity;
using NodeMesh.Tunnel;

namespace NodeMesh.Bench;

/// <summary>
/// The mesh's TLS 1.3 hop on loopback, set up as the agents set it up: a fresh embedded CA (ECDSA P-256), the
/// dialler presenting a workload certificate, the listener its node certificate, both checked by the agent's
/// <see cref="PeerCertificateVerifier"/>, Nagle off on both sockets. Both transports under test get the same.
/// </summary>
internal sealed class LoopbackTls : IDisposable
{
    private const string TrustDomain = "cluster.local";

    /// <summary>ALPN of the MultiplexingStream connection: not the agent's, since it does not speak nodemesh/1.</summary>
    private static readonly SslApplicationProtocol MultiplexingProtocol = new("nerdbank-mux/bench");

    private readonly string _caDir = Path.Combine(Path.GetTempPath(), "nm-bench-" + Guid.NewGuid().ToString("N"));
    private readonly CertificateAuthority _ca;
    private readonly EmbeddedCaCertificates _certificates;
    private readonly PeerCertificateVerifier _verifier;

    public LoopbackTls()
    {
        _ca = CertificateAuthority.Create(_caDir, TrustDomain, TimeSpan.FromDays(1));
        _certificates = new EmbeddedCaCertificates(CertificateAuthority.Load(_caDir), TimeSpan.FromHours(1), Node);
        _verifier = new PeerCertificateVerifier(TrustDomain, () => _certificates.TrustBundle);
    }

    public static SpiffeId Node { get; } = MeshIdentities.Node(TrustDomain, "node1");

    public static SpiffeId Workload { get; } = SpiffeId.Parse($"spiffe://{TrustDomain}/ns/bench/sa/client");

    /// <summary>A tunnel connection pair of the agent's own protocol (dialled with its own <see cref="TunnelConnection.ConnectAsync"/>).</summary>
    public async Task<(TunnelConnection Client, TunnelConnection Server, string Cipher)> ConnectTunnelAsync()
    {
        using Socket listener = Listen();
        Task<(Socket Socket, SslStream Tls, SpiffeId Peer)> accepting = AcceptAsync(listener, TunnelConnection.ApplicationProtocol);
        TunnelConnection client = await TunnelConnection.ConnectAsync((IPEndPoint)listener.LocalEndPoint!, Workload,
            await _certificates.GetWorkloadCertificateAsync(Workload, default), _verifier, Node, TimeSpan.FromSeconds(10), default);
        (Socket socket, SslStream tls, SpiffeId peer) = await accepting;
        return (client, TunnelConnection.Accepted(socket, tls, Node, peer), tls.NegotiatedCipherSuite.ToString());
    }

    /// <summary>A plain authenticated TLS stream pair, for a multiplexer that brings its own framing.</summary>
    public async Task<(SslStream Client, SslStream Server)> ConnectStreamsAsync()
    {
        using Socket listener = Listen();
        Task<(Socket Socket, SslStream Tls, SpiffeId Peer)> accepting = AcceptAsync(listener, MultiplexingProtocol);
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(listener.LocalEndPoint!);
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = IPAddress.Loopback.ToString(),
            EnabledSslProtocols = TunnelConnection.Protocols,
            ApplicationProtocols = [MultiplexingProtocol],
            ClientCertificateContext = await _certificates.GetWorkloadCertificateAsync(Workload, default),
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, presented, chain, _) => _verifier.TryVerify(presented, chain, out SpiffeId? peer, out _) && peer == Node,
        });
        return (tls, (await accepting).Tls);
    }

    private static Socket Listen()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        return listener;
    }

    private async Task<(Socket Socket, SslStream Tls, SpiffeId Peer)> AcceptAsync(Socket listener, SslApplicationProtocol protocol)
    {
        Socket socket = await listener.AcceptAsync();
        socket.NoDelay = true;
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        SpiffeId? peer = null;
        await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
        {
            ServerCertificateContext = await _certificates.GetNodeCertificateAsync(default),
            ClientCertificateRequired = true,
            EnabledSslProtocols = TunnelConnection.Protocols,
            ApplicationProtocols = [protocol],
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, presented, chain, _) => _verifier.TryVerify(presented, chain, out peer, out _),
        });
        if (tls.NegotiatedApplicationProtocol != protocol || peer is null)
        {
            throw new AuthenticationException($"loopback handshake: expected ALPN {protocol} and a mesh peer");
        }

        return (socket, tls, peer);
    }

    public void Dispose()
    {
        _certificates.Dispose();
        _ca.Dispose();
        Directory.Delete(_caDir, recursive: true);
    }
}
