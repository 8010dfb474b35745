using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// Where the agent's certificates come from: the embedded CA (<see cref="EmbeddedCaCertificates"/>), the mesh CA
/// reached with signing requests (<see cref="CaClientCertificates"/>), or files kept fresh by an external issuer
/// (<see cref="FileCertificates"/>). A renewed certificate is a new <see cref="SslStreamCertificateContext"/>:
/// connections made before keep the one they were made with. When no valid certificate can be had, the
/// getters throw <see cref="CertificateUnavailableException"/> and the flow must be refused (fail closed).
/// </summary>
internal interface ICertificateProvider : IDisposable
{
    /// <summary>The roots a peer's certificate must chain to, now (it may change at run time; read it per handshake).</summary>
    X509Certificate2Collection TrustBundle { get; }

    /// <summary>The certificate (with private key and chain) a workload's flows are sent under.</summary>
    ValueTask<SslStreamCertificateContext> GetWorkloadCertificateAsync(SpiffeId identity, CancellationToken cancellationToken);

    /// <summary>The certificate this agent's tunnel listener presents.</summary>
    ValueTask<SslStreamCertificateContext> GetNodeCertificateAsync(CancellationToken cancellationToken);

    /// <summary>No workload of <paramref name="identity"/> is left on this node: stop renewing it and drop its key.</summary>
    void Forget(SpiffeId identity);

    /// <summary>Every certificate held or being sought now (the node's included), for `status`.</summary>
    IReadOnlyList<CertificateStatus> Status();
}
