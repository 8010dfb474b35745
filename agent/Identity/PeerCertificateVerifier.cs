using System.Formats.Asn1;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// Decides whether a peer's certificate is acceptable: it chains to the trust bundle, is valid now, and
/// carries exactly one URI SAN that is a SPIFFE id in this trust domain. Nothing else is matched loosely.
/// </summary>
internal sealed class PeerCertificateVerifier
{
    private readonly string _trustDomain;
    private readonly Func<X509Certificate2Collection> _trustBundle;

    public PeerCertificateVerifier(string trustDomain, Func<X509Certificate2Collection> trustBundle)
    {
        _trustDomain = trustDomain;
        _trustBundle = trustBundle;
    }

    public bool TryVerify(X509Certificate? presented, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason)
    {
        identity = null;
        if (presented is null)
        {
            reason = "no certificate presented";
            return false;
        }

        using var certificate = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_trustBundle());
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = DateTime.Now;
        if (!chain.Build(certificate))
        {
            string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()));
            reason = $"certificate does not chain to the trust bundle ({status})";
            return false;
        }

        List<string> uris;
        try
        {
            uris = ReadUriSans(certificate);
        }
        catch (AsnContentException ex)
        {
            reason = $"malformed subject alternative name: {ex.Message}";
            return false;
        }

        if (uris.Count != 1)
        {
            reason = $"certificate must carry exactly one URI SAN, found {uris.Count}";
            return false;
        }

        if (!SpiffeId.TryParse(uris[0], out SpiffeId? id, out string? error))
        {
            reason = error;
            return false;
        }

        if (!string.Equals(id.TrustDomain, _trustDomain, StringComparison.Ordinal))
        {
            reason = $"{id} is not in trust domain {_trustDomain}";
            return false;
        }

        identity = id;
        reason = null;
        return true;
    }

    /// <summary>The uniformResourceIdentifier entries ([6] IA5String) of the SAN extension, read with the BCL's DER reader.</summary>
    internal static List<string> ReadUriSans(X509Certificate2 certificate)
    {
        List<string> uris = [];
        foreach (X509Extension extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }

            var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
            AsnReader names = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
            while (names.HasData)
            {
                Asn1Tag tag = names.PeekTag();
                if (tag == uriTag)
                {
                    uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag));
                }
                else
                {
                    names.ReadEncodedValue();
                }
            }
        }

        return uris;
    }
}
