using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// Where the agent's certificates come from. The embedded CA implements it today; a CA reached with
/// signing requests, or files kept fresh by an external issuer, implement the same interface.
/// </summary>
internal interface ICertificateProvider : IDisposable
{
    /// <summary>The roots a peer's certificate must chain to.</summary>
    X509Certificate2Collection TrustBundle { get; }

    /// <summary>The certificate (with private key and chain) a workload's flows are sent under.</summary>
    ValueTask<SslStreamCertificateContext> GetWorkloadCertificateAsync(SpiffeId identity, CancellationToken cancellationToken);

    /// <summary>The certificate this agent's tunnel listener presents.</summary>
    ValueTask<SslStreamCertificateContext> GetNodeCertificateAsync(CancellationToken cancellationToken);
}
