using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// The one chain policy of the agent: trust only the mesh bundle's roots, never fetch anything (an AIA or CRL
/// URL in a certificate an unauthenticated peer sent would make the agent connect wherever it points, and block
/// a thread while it does), no revocation check (mesh certificates are short-lived instead). Every X509Chain the
/// agent builds, and every SslStream it authenticates (its <c>CertificateChainPolicy</c>), uses it.
/// </summary>
internal static class MeshChainPolicy
{
    public static X509ChainPolicy Create(X509Certificate2Collection roots)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            DisableCertificateDownloads = true,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(roots);
        return policy;
    }
}
