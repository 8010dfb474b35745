using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Gateway;

/// <summary>
/// Client certificates at the edge: whether one chains to the listener's CA (and only to it: the system's roots
/// are not consulted), and the X-Forwarded-Client-Cert value the backend gets, in Envoy's form.
/// </summary>
internal static class ClientCertificates
{
    public static bool Chains(X509Certificate2 certificate, X509Certificate2Collection roots)
    {
        using var chain = new X509Chain { ChainPolicy = Identity.MeshChainPolicy.Create(roots) };
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.2")); // clientAuth, where the certificate names its uses
        return chain.Build(certificate);
    }

    /// <summary><c>Hash=SHA256 of the DER;Subject="…"</c>, quotes in the subject escaped.</summary>
    public static string ForwardedValue(X509Certificate2 certificate) =>
        $"Hash={Convert.ToHexStringLower(SHA256.HashData(certificate.RawData))};Subject=\"{certificate.Subject.Replace("\"", "\\\"", StringComparison.Ordinal)}\"";
}
