using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// A root CA kept in a directory (<c>ca.crt</c>, <c>ca.key</c> with mode 0600), created by <c>nodemesh ca init</c>.
/// It signs short-lived ECDSA P-256 certificates whose only subject alternative name is a SPIFFE URI.
/// </summary>
internal sealed class CertificateAuthority : IDisposable
{
    private const string CertFile = "ca.crt";
    private const string KeyFile = "ca.key";

    private readonly X509Certificate2 _root;
    private readonly ECDsa _key;

    private CertificateAuthority(X509Certificate2 root, ECDsa key)
    {
        _root = root;
        _key = key;
    }

    public X509Certificate2 Root => _root;

    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, CertFile)) && File.Exists(Path.Combine(dir, KeyFile));

    /// <summary>Creates a new root for <paramref name="trustDomain"/> in <paramref name="dir"/>; refuses to overwrite one.</summary>
    public static CertificateAuthority Create(string dir, string trustDomain, TimeSpan lifetime)
    {
        if (!SpiffeId.IsTrustDomain(trustDomain))
        {
            throw new ArgumentException($"'{SpiffeId.Printable(trustDomain)}' is not a valid trust domain", nameof(trustDomain));
        }

        if (Exists(dir))
        {
            throw new InvalidOperationException($"a CA already exists in {dir}; remove it first to create a new one");
        }

        Directory.CreateDirectory(dir);
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"O=NodeMesh, CN=NodeMesh root for {trustDomain}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 1, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var builder = new SubjectAlternativeNameBuilder();
        builder.AddUri(new Uri($"spiffe://{trustDomain}"));
        request.CertificateExtensions.Add(builder.Build());
        DateTimeOffset now = DateTimeOffset.UtcNow;
        X509Certificate2 root = request.CreateSelfSigned(now.AddMinutes(-5), now.Add(lifetime));

        string keyPath = Path.Combine(dir, KeyFile);
        using (var stream = new FileStream(keyPath, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        using (var writer = new StreamWriter(stream))
        {
            writer.Write(key.ExportPkcs8PrivateKeyPem());
        }

        File.WriteAllText(Path.Combine(dir, CertFile), root.ExportCertificatePem());
        return new CertificateAuthority(X509CertificateLoader.LoadCertificate(root.RawData), key);
    }

    public static CertificateAuthority Load(string dir)
    {
        string certPath = Path.Combine(dir, CertFile);
        string keyPath = Path.Combine(dir, KeyFile);
        if (!Exists(dir))
        {
            throw new FileNotFoundException($"no CA in {dir} (expected {CertFile} and {KeyFile}); create one with 'nodemesh ca init --dir {dir}'");
        }

        try
        {
            X509Certificate2 root = X509Certificate2.CreateFromPem(File.ReadAllText(certPath));
            var key = ECDsa.Create();
            key.ImportFromPem(File.ReadAllText(keyPath));
            using (ECDsa? rootKey = root.GetECDsaPublicKey())
            {
                if (rootKey is null || !rootKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
                {
                    throw new InvalidDataException($"{keyPath} is not the key of {certPath}");
                }
            }

            return new CertificateAuthority(root, key);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"cannot read the CA in {dir}: {ex.Message}", ex);
        }
    }

    /// <summary>Issues a leaf certificate for <paramref name="identity"/> with a fresh P-256 key.</summary>
    public X509Certificate2 Issue(SpiffeId identity, TimeSpan lifetime)
    {
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", leafKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(identity.Uri));
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_root, true, false));

        DateTimeOffset now = DateTimeOffset.UtcNow;
        DateTimeOffset notAfter = now.Add(lifetime);
        if (notAfter > _root.NotAfter)
        {
            notAfter = _root.NotAfter;
        }

        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using X509Certificate2 issued = request.Create(_root.SubjectName, X509SignatureGenerator.CreateForECDsa(_key), now.AddMinutes(-1), notAfter, serial);
        using X509Certificate2 withKey = issued.CopyWithPrivateKey(leafKey);

        // Round-trip through PKCS#12 so the key is usable by OpenSSL-backed SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public void Dispose()
    {
        _root.Dispose();
        _key.Dispose();
    }
}
