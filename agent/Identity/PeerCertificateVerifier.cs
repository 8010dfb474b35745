using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// Decides whether a peer's certificate is acceptable: it chains to the trust bundle, is valid now, and
/// carries exactly one URI SAN that is a SPIFFE id in this trust domain. Nothing else is matched loosely.
/// Intermediates come from the peer (the chain it sent) and from earlier verifications: a resumed TLS session
/// carries only the leaf, so the intermediates of chains that verified before are remembered (a bounded set)
/// as candidates. They never add trust; only the bundle's roots do.
/// </summary>
internal sealed class PeerCertificateVerifier
{
    private const int MaxRememberedIntermediates = 64;

    private readonly string _trustDomain;
    private readonly Func<X509Certificate2Collection> _trustBundle;
    private readonly ConcurrentDictionary<string, X509Certificate2> _intermediates = new(StringComparer.Ordinal);

    public PeerCertificateVerifier(string trustDomain, Func<X509Certificate2Collection> trustBundle)
    {
        _trustDomain = trustDomain;
        _trustBundle = trustBundle;
    }

    /// <summary>
    /// The chain policy for an SslStream that authenticates a mesh peer (its <c>CertificateChainPolicy</c>): the
    /// stream builds a chain before it calls the validation callback, and without this policy that build would
    /// download whatever the peer's certificate points to.
    /// </summary>
    public X509ChainPolicy CreateChainPolicy() => MeshChainPolicy.Create(_trustBundle());

    public bool TryVerify(X509Certificate? presented, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason) =>
        TryVerify(presented, intermediates: [], out identity, out reason);

    /// <summary>
    /// As <see cref="TryVerify(X509Certificate?, out SpiffeId?, out string?)"/>, with the intermediates the peer sent
    /// in the handshake (the <see cref="X509Chain"/> a TLS validation callback receives). They are only
    /// candidates for building the chain; trust still comes from the bundle alone.
    /// </summary>
    public bool TryVerify(X509Certificate? presented, X509Chain? sentChain, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason) =>
        TryVerify(presented, sentChain, out identity, out reason, out _);

    /// <summary>As the overload without <paramref name="rejection"/>, telling what kind of refusal it was (for the handshake metrics).</summary>
    public bool TryVerify(X509Certificate? presented, X509Chain? sentChain, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason,
        out PeerRejection rejection)
    {
        X509Certificate2Collection intermediates = [];
        if (sentChain is not null)
        {
            intermediates.AddRange(sentChain.ChainPolicy.ExtraStore);
            for (int i = 1; i < sentChain.ChainElements.Count; i++)
            {
                intermediates.Add(sentChain.ChainElements[i].Certificate);
            }
        }

        return TryVerify(presented, intermediates, out identity, out reason, out rejection);
    }

    /// <summary>Verifies <paramref name="presented"/> with <paramref name="intermediates"/> as untrusted chain candidates.</summary>
    public bool TryVerify(X509Certificate? presented, X509Certificate2Collection intermediates, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason) =>
        TryVerify(presented, intermediates, out identity, out reason, out _);

    private bool TryVerify(X509Certificate? presented, X509Certificate2Collection intermediates, [NotNullWhen(true)] out SpiffeId? identity, [NotNullWhen(false)] out string? reason,
        out PeerRejection rejection)
    {
        identity = null;
        rejection = PeerRejection.Identity;
        if (presented is null)
        {
            reason = "no certificate presented";
            rejection = PeerRejection.NoCertificate;
            return false;
        }

        using var certificate = X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        using var chain = new X509Chain { ChainPolicy = CreateChainPolicy() };
        chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        foreach (X509Certificate2 remembered in _intermediates.Values)
        {
            chain.ChainPolicy.ExtraStore.Add(remembered);
        }

        chain.ChainPolicy.VerificationTime = DateTime.Now;
        if (!chain.Build(certificate))
        {
            string status = string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()));
            reason = $"certificate does not chain to the trust bundle ({status})";
            rejection = PeerRejection.Untrusted;
            return false;
        }

        Remember(chain);

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
        rejection = PeerRejection.None;
        return true;
    }

    /// <summary>Keeps the intermediates of a chain that verified (not its leaf, not its root).</summary>
    private void Remember(X509Chain chain)
    {
        for (int i = 1; i < chain.ChainElements.Count - 1; i++)
        {
            X509Certificate2 intermediate = chain.ChainElements[i].Certificate;
            if (_intermediates.ContainsKey(intermediate.Thumbprint))
            {
                continue;
            }

            if (_intermediates.Count >= MaxRememberedIntermediates)
            {
                DateTime now = DateTime.Now;
                foreach ((string thumbprint, X509Certificate2 old) in _intermediates)
                {
                    if (old.NotAfter < now)
                    {
                        _intermediates.TryRemove(thumbprint, out _);
                    }
                }

                if (_intermediates.Count >= MaxRememberedIntermediates)
                {
                    _intermediates.Clear();
                }
            }

            _intermediates.TryAdd(intermediate.Thumbprint, X509CertificateLoader.LoadCertificate(intermediate.RawData));
        }
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
