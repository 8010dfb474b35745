using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// Certificates signed locally by the embedded CA: one per identity on this node, issued on first use and
/// reissued when less than half of its lifetime remains, so rotation never waits on a flow.
/// </summary>
internal sealed class EmbeddedCaCertificates : ICertificateProvider, IDisposable
{
    private readonly CertificateAuthority _ca;
    private readonly TimeSpan _lifetime;
    private readonly ConcurrentDictionary<SpiffeId, Issued> _issued = new();
    private readonly SpiffeId _nodeIdentity;

    /// <param name="nodeIdentity">What the tunnel listener presents: this agent's <see cref="MeshIdentities.Node"/> identity.</param>
    public EmbeddedCaCertificates(CertificateAuthority ca, TimeSpan lifetime, SpiffeId nodeIdentity)
    {
        _ca = ca;
        _lifetime = lifetime;
        _nodeIdentity = nodeIdentity;
    }

    /// <summary>The CA's root and any further roots in its <c>trust-bundle.pem</c> (see <see cref="CertificateAuthority.ReloadTrustBundle"/>).</summary>
    public X509Certificate2Collection TrustBundle => _ca.TrustBundle.Roots;

    public TrustBundle Bundle => _ca.TrustBundle;

    public ValueTask<SslStreamCertificateContext> GetNodeCertificateAsync(CancellationToken cancellationToken) =>
        GetWorkloadCertificateAsync(_nodeIdentity, cancellationToken);

    public ValueTask<SslStreamCertificateContext> GetWorkloadCertificateAsync(SpiffeId identity, CancellationToken cancellationToken)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        if (_issued.TryGetValue(identity, out Issued? current) && now < current.RenewAt)
        {
            return ValueTask.FromResult(current.Context);
        }

        X509Certificate2 certificate = _ca.Issue(identity, _lifetime);
        DateTimeOffset notBefore = certificate.NotBefore.ToUniversalTime();
        DateTimeOffset renewAt = notBefore + ((certificate.NotAfter.ToUniversalTime() - notBefore) / 2);
        var context = SslStreamCertificateContext.Create(certificate, _ca.Chain, offline: true);
        _issued[identity] = new Issued(context, renewAt, certificate.NotAfter.ToUniversalTime());
        return ValueTask.FromResult(context);
    }

    public void Forget(SpiffeId identity)
    {
        if (identity != _nodeIdentity)
        {
            _issued.TryRemove(identity, out _);
        }
    }

    public IReadOnlyList<CertificateStatus> Status() =>
        [.. _issued.Select(entry => new CertificateStatus(entry.Key, entry.Value.NotAfter, null) { Leaf = entry.Value.Context.TargetCertificate })];

    public void Dispose() => _ca.Dispose();

    private sealed record Issued(SslStreamCertificateContext Context, DateTimeOffset RenewAt, DateTimeOffset NotAfter);
}
