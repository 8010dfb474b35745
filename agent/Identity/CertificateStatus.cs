using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>What a provider holds for one identity, for status pages and readiness.</summary>
/// <param name="NotAfter">When the certificate being served expires; null if there is none yet.</param>
/// <param name="LastError">Why the last attempt to get one failed; null after a success.</param>
internal sealed record CertificateStatus(SpiffeId Identity, DateTimeOffset? NotAfter, string? LastError)
{
    /// <summary>The certificate being served, if any (serial, issuer, validity for the admin API).</summary>
    public X509Certificate2? Leaf { get; init; }
}
