using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// PKCS#10 certificate signing requests between agents and the CA, built and read with the BCL only. The CA
/// takes nothing from a request but its public key, and only after its signature proves the sender holds the key.
/// </summary>
internal static class SigningRequests
{
    public const int MaxPemChars = 8 * 1024;

    private const string EcPublicKeyOid = "1.2.840.10045.2.1";
    private const string P256Oid = "1.2.840.10045.3.1.7";

    /// <summary>A PEM CSR signed by <paramref name="key"/>, naming <paramref name="identity"/> (which the CA ignores and sets itself).</summary>
    public static string Create(ECDsa key, SpiffeId identity)
    {
        var request = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(identity.Uri));
        request.CertificateExtensions.Add(san.Build(critical: true));
        return request.CreateSigningRequestPem();
    }

    /// <summary>
    /// The public key of a CSR if it is well formed, carries a valid self-signature, and the key is ECDSA P-256;
    /// otherwise false with the reason.
    /// </summary>
    public static bool TryReadP256Key(string? pem, [NotNullWhen(true)] out PublicKey? publicKey, [NotNullWhen(false)] out string? reason)
    {
        publicKey = null;
        if (string.IsNullOrEmpty(pem))
        {
            reason = "CSR is missing";
            return false;
        }

        if (pem.Length > MaxPemChars)
        {
            reason = $"CSR is longer than {MaxPemChars} characters";
            return false;
        }

        CertificateRequest request;
        try
        {
            // Default options validate the request's signature, and load none of its extensions.
            request = CertificateRequest.LoadSigningRequestPem(pem, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.Default);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            reason = $"CSR is malformed or its signature is invalid: {ex.Message}";
            return false;
        }

        if (request.PublicKey.Oid.Value != EcPublicKeyOid)
        {
            reason = $"CSR key must be ECDSA P-256, not {request.PublicKey.Oid.FriendlyName ?? request.PublicKey.Oid.Value}";
            return false;
        }

        try
        {
            using ECDsa? key = request.PublicKey.GetECDsaPublicKey();
            ECCurve curve = key?.ExportParameters(false).Curve ?? default;
            if (key is null || !curve.IsNamed || (curve.Oid.Value != P256Oid && curve.Oid.FriendlyName is not ("nistP256" or "ECDSA_P256")))
            {
                reason = $"CSR key must be ECDSA P-256, not curve {curve.Oid?.FriendlyName ?? curve.Oid?.Value ?? "unknown"}";
                return false;
            }
        }
        catch (CryptographicException ex)
        {
            reason = $"CSR key is not a usable ECDSA key: {ex.Message}";
            return false;
        }

        publicKey = request.PublicKey;
        reason = null;
        return true;
    }
}
