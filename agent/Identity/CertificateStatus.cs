namespace NodeMesh.Identity;

/// <summary>What a provider holds for one identity, for status pages and readiness.</summary>
/// <param name="NotAfter">When the certificate being served expires; null if there is none yet.</param>
/// <param name="LastError">Why the last attempt to get one failed; null after a success.</param>
internal sealed record CertificateStatus(SpiffeId Identity, DateTimeOffset? NotAfter, string? LastError);
