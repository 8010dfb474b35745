using System.Net.Sockets;
using System.Security.Authentication;
using NodeMesh.Identity;

namespace NodeMesh.Tunnel;

/// <summary>
/// Why a tunnel handshake failed, as the <c>reason</c> label of <c>nodemesh_tunnel_handshake_failures_total</c>:
/// a short fixed set, so a dashboard can tell a peer of another CA from a slow network from a wrong protocol.
/// </summary>
internal static class HandshakeFailure
{
    public const string Timeout = "timeout";
    public const string Closed = "closed";
    public const string NoCertificate = "no-certificate";
    public const string Untrusted = "untrusted";
    public const string Identity = "identity";
    public const string Alpn = "alpn";
    public const string Tls = "tls";
    public const string LocalCertificate = "local-certificate";

    /// <summary>Every label value, for the README and its test.</summary>
    public static readonly string[] All = [Timeout, Closed, NoCertificate, Untrusted, Identity, Alpn, Tls, LocalCertificate];

    /// <summary>
    /// The reason for <paramref name="failure"/>: what the certificate check refused, if it did, else what the
    /// exception says. <paramref name="alpn"/> is true when the peer finished TLS without the tunnel's ALPN.
    /// </summary>
    public static string Classify(Exception failure, PeerRejection rejection, bool alpn) => rejection switch
    {
        PeerRejection.NoCertificate => NoCertificate,
        PeerRejection.Untrusted => Untrusted,
        PeerRejection.Identity => Identity,
        _ when alpn => Alpn,
        _ => failure switch
        {
            OperationCanceledException or TimeoutException => Timeout,
            CertificateUnavailableException => LocalCertificate,
            AuthenticationException => Tls,
            IOException or SocketException or ObjectDisposedException => Closed,
            _ => Tls,
        },
    };
}
