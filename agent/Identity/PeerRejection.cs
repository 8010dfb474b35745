namespace NodeMesh.Identity;

/// <summary>Why <see cref="PeerCertificateVerifier"/> refused a peer's certificate, in the few kinds an operator acts on.</summary>
internal enum PeerRejection
{
    /// <summary>The certificate was accepted.</summary>
    None,

    /// <summary>The peer sent no certificate.</summary>
    NoCertificate,

    /// <summary>It does not chain to the trust bundle (another CA, expired, not yet valid…).</summary>
    Untrusted,

    /// <summary>It chains, but its identity is not a SPIFFE id of this trust domain (or not the one expected).</summary>
    Identity,
}
