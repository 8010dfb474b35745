using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// The mesh CA, kept in a directory created by <c>nodemesh ca init</c>:
/// <list type="bullet">
/// <item><c>ca.crt</c>, <c>ca.key</c> (0600): the root. Once an intermediate exists the root key may be moved
/// offline; it is only needed to create intermediates.</item>
/// <item><c>intermediate.crt</c>, <c>intermediate.key</c> (0600), optional: issued by the root; when present it
/// signs every leaf, and leaves are served with it as their chain.</item>
/// <item><c>trust-bundle.pem</c>, optional: further roots trusted besides <c>ca.crt</c> (the previous or next
/// root while a root rotation overlaps).</item>
/// <item><c>join.key</c> (0600): the secret join tokens are signed with (<see cref="JoinTokens"/>).</item>
/// </list>
/// It signs short-lived ECDSA P-256 leaves whose only subject alternative name is a SPIFFE URI, never valid
/// beyond the certificate that signs them.
/// </summary>
internal sealed class CertificateAuthority : IDisposable
{
    /// <summary>Leaf lifetime when the operator sets none.</summary>
    public static readonly TimeSpan DefaultLeafLifetime = TimeSpan.FromHours(24);

    internal const string CertFile = "ca.crt";
    internal const string KeyFile = "ca.key";
    internal const string IntermediateCertFile = "intermediate.crt";
    internal const string IntermediateKeyFile = "intermediate.key";
    internal const string ExtraRootsFile = "trust-bundle.pem";

    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    private readonly X509Certificate2 _root;
    private readonly X509Certificate2? _intermediate;
    private readonly X509Certificate2 _signer;
    private readonly ECDsa _signerKey;
    private readonly string? _dir;

    private CertificateAuthority(X509Certificate2 root, X509Certificate2? intermediate, ECDsa signerKey, string? dir)
    {
        _root = root;
        _intermediate = intermediate;
        _signer = intermediate ?? root;
        _signerKey = signerKey;
        _dir = dir;
        Chain = intermediate is null ? [] : [X509CertificateLoader.LoadCertificate(intermediate.RawData)];
        TrustBundle = new TrustBundle(ReadTrustedRoots());
    }

    public X509Certificate2 Root => _root;

    /// <summary>The intermediate that signs leaves, if the CA has one.</summary>
    public X509Certificate2? Intermediate => _intermediate;

    /// <summary>The certificates between a leaf and the root (the intermediate, or none), sent with every leaf.</summary>
    public X509Certificate2Collection Chain { get; }

    /// <summary>
    /// What peers must trust: this CA's root and any further roots in <c>trust-bundle.pem</c>.
    /// <see cref="ReloadTrustBundle"/> re-reads that file.
    /// </summary>
    public TrustBundle TrustBundle { get; }

    public string TrustDomain => ReadTrustDomain(_root) ?? "";

    public static bool Exists(string dir) =>
        File.Exists(Path.Combine(dir, CertFile))
        && (File.Exists(Path.Combine(dir, KeyFile)) || File.Exists(Path.Combine(dir, IntermediateKeyFile)));

    /// <summary>Creates a new root for <paramref name="trustDomain"/> in <paramref name="dir"/>; refuses to overwrite one.</summary>
    public static CertificateAuthority Create(string dir, string trustDomain, TimeSpan lifetime) =>
        Create(dir, trustDomain, lifetime, intermediateLifetime: null);

    /// <summary>
    /// Creates a new root for <paramref name="trustDomain"/> in <paramref name="dir"/> and, when
    /// <paramref name="intermediateLifetime"/> is given, an intermediate that signs the leaves. Refuses to
    /// overwrite an existing CA.
    /// </summary>
    public static CertificateAuthority Create(string dir, string trustDomain, TimeSpan lifetime, TimeSpan? intermediateLifetime)
    {
        if (!SpiffeId.IsTrustDomain(trustDomain))
        {
            throw new ArgumentException($"'{SpiffeId.Printable(trustDomain)}' is not a valid trust domain", nameof(trustDomain));
        }

        if (lifetime <= TimeSpan.Zero || intermediateLifetime <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(lifetime), "CA lifetimes must be positive");
        }

        if (Exists(dir) || File.Exists(Path.Combine(dir, CertFile)))
        {
            throw new InvalidOperationException($"a CA already exists in {dir}; remove it first to create a new one");
        }

        Directory.CreateDirectory(dir);
        DateTimeOffset now = DateTimeOffset.UtcNow;
        var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"O=NodeMesh, CN=NodeMesh root for {trustDomain}", rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 1, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(TrustDomainSan(trustDomain));
        using X509Certificate2 root = request.CreateSelfSigned(now.AddMinutes(-5), now.Add(lifetime));

        X509Certificate2? intermediate = null;
        ECDsa? intermediateKey = null;
        if (intermediateLifetime is TimeSpan intermediateFor)
        {
            intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var intermediateRequest = new CertificateRequest($"O=NodeMesh, CN=NodeMesh intermediate for {trustDomain}", intermediateKey, HashAlgorithmName.SHA256);
            intermediateRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            intermediateRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            intermediateRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(intermediateRequest.PublicKey, false));
            intermediateRequest.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(root, true, false));
            intermediateRequest.CertificateExtensions.Add(TrustDomainSan(trustDomain));
            DateTimeOffset notAfter = Min(now.Add(intermediateFor), root.NotAfter.ToUniversalTime());
            intermediate = intermediateRequest.Create(root, now.AddMinutes(-5), notAfter, NewSerial());
        }

        WritePrivateFile(Path.Combine(dir, KeyFile), rootKey.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(dir, CertFile), root.ExportCertificatePem());
        if (intermediate is not null && intermediateKey is not null)
        {
            WritePrivateFile(Path.Combine(dir, IntermediateKeyFile), intermediateKey.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(Path.Combine(dir, IntermediateCertFile), intermediate.ExportCertificatePem());
            rootKey.Dispose();
            return new CertificateAuthority(X509CertificateLoader.LoadCertificate(root.RawData), intermediate, intermediateKey, dir);
        }

        return new CertificateAuthority(X509CertificateLoader.LoadCertificate(root.RawData), null, rootKey, dir);
    }

    public static CertificateAuthority Load(string dir)
    {
        string certPath = Path.Combine(dir, CertFile);
        string keyPath = Path.Combine(dir, KeyFile);
        string intermediateCertPath = Path.Combine(dir, IntermediateCertFile);
        string intermediateKeyPath = Path.Combine(dir, IntermediateKeyFile);
        if (!Exists(dir))
        {
            throw new FileNotFoundException($"no CA in {dir} (expected {CertFile} and {KeyFile}); create one with 'nodemesh ca init --dir {dir}'");
        }

        bool hasIntermediate = File.Exists(intermediateCertPath) || File.Exists(intermediateKeyPath);
        X509Certificate2? root = null;
        X509Certificate2? intermediate = null;
        ECDsa? key = null;
        try
        {
            root = X509Certificate2.CreateFromPem(File.ReadAllText(certPath));
            if (!hasIntermediate)
            {
                key = ReadMatchingKey(root, keyPath, certPath);
                return new CertificateAuthority(root, null, key, dir);
            }

            if (!File.Exists(intermediateCertPath) || !File.Exists(intermediateKeyPath))
            {
                throw new InvalidDataException($"{dir} must hold both {IntermediateCertFile} and {IntermediateKeyFile}, or neither");
            }

            intermediate = X509Certificate2.CreateFromPem(File.ReadAllText(intermediateCertPath));
            key = ReadMatchingKey(intermediate, intermediateKeyPath, intermediateCertPath);
            if (!ChainsTo(intermediate, root, out string? status))
            {
                throw new InvalidDataException($"{intermediateCertPath} is not issued by {certPath} ({status})");
            }

            return new CertificateAuthority(root, intermediate, key, dir);
        }
        catch (Exception ex) when (ex is CryptographicException or InvalidDataException)
        {
            root?.Dispose();
            intermediate?.Dispose();
            key?.Dispose();
            string message = ex is InvalidDataException ? ex.Message : $"cannot read the CA in {dir}: {ex.Message}";
            throw new InvalidDataException(message, ex);
        }
    }

    /// <summary>
    /// Writes the roots, besides this CA's own, that peers must also trust (the old root while a new one takes
    /// over, or the new one before it does). An empty collection removes the file.
    /// </summary>
    public static void WriteAdditionalRoots(string dir, X509Certificate2Collection roots)
    {
        string path = Path.Combine(dir, ExtraRootsFile);
        if (roots.Count == 0)
        {
            File.Delete(path);
            return;
        }

        _ = new TrustBundle(roots);
        string temporary = path + ".tmp";
        File.WriteAllText(temporary, TrustBundle.ExportPem(roots));
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Re-reads <c>trust-bundle.pem</c>; returns whether the bundle changed. A malformed file throws and changes nothing.</summary>
    public bool ReloadTrustBundle() => TrustBundle.Update(ReadTrustedRoots());

    /// <summary>Issues a leaf certificate for <paramref name="identity"/> with a fresh P-256 key (the embedded CA's path).</summary>
    public X509Certificate2 Issue(SpiffeId identity, TimeSpan lifetime)
    {
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", leafKey, HashAlgorithmName.SHA256);
        using X509Certificate2 issued = Issue(identity, request.PublicKey, lifetime);
        using X509Certificate2 withKey = issued.CopyWithPrivateKey(leafKey);

        // Round-trip through PKCS#12 so the key is usable by OpenSSL-backed SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Issues a leaf for <paramref name="identity"/> to the holder of <paramref name="publicKey"/> (taken from a
    /// verified signing request). Exactly one URI SAN, the identity; nothing else from the request is copied.
    /// Valid from a minute ago for <paramref name="lifetime"/>, but never beyond the signing certificate.
    /// </summary>
    public X509Certificate2 Issue(SpiffeId identity, PublicKey publicKey, TimeSpan lifetime)
    {
        if (lifetime <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(lifetime), "a certificate lifetime must be positive");
        }

        var request = new CertificateRequest(new X500DistinguishedName(""), publicKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([ServerAuth, ClientAuth], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(identity.Uri));
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_signer, true, false));

        DateTimeOffset now = DateTimeOffset.UtcNow;
        DateTimeOffset notBefore = Max(now.AddMinutes(-1), _signer.NotBefore.ToUniversalTime());
        DateTimeOffset notAfter = Min(now.Add(lifetime), _signer.NotAfter.ToUniversalTime());
        if (notAfter <= now)
        {
            throw new InvalidOperationException($"the CA's signing certificate expired at {_signer.NotAfter.ToUniversalTime():u}; create a new CA or intermediate");
        }

        return request.Create(_signer.SubjectName, X509SignatureGenerator.CreateForECDsa(_signerKey), notBefore, notAfter, NewSerial());
    }

    /// <summary>Creates <paramref name="path"/> (which must not exist) readable and writable by the owner only.</summary>
    internal static void WritePrivateFile(string path, string content)
    {
        using var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        using var writer = new StreamWriter(stream);
        writer.Write(content);
    }

    /// <summary>
    /// Replaces <paramref name="path"/> with <paramref name="content"/> atomically: written to a temporary file
    /// readable and writable by the owner only, flushed to disk, then renamed over the old one.
    /// </summary>
    internal static void ReplacePrivateFile(string path, string content)
    {
        string temporary = path + ".tmp";
        File.Delete(temporary);
        using (var stream = new FileStream(temporary, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        }))
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(content));
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, path, overwrite: true);
    }

    public void Dispose()
    {
        _root.Dispose();
        _intermediate?.Dispose();
        _signerKey.Dispose();
    }

    private X509Certificate2Collection ReadTrustedRoots()
    {
        X509Certificate2Collection roots = [X509CertificateLoader.LoadCertificate(_root.RawData)];
        string? extra = _dir is null ? null : Path.Combine(_dir, ExtraRootsFile);
        if (extra is not null && File.Exists(extra))
        {
            foreach (X509Certificate2 other in TrustBundle.ReadFile(extra))
            {
                if (other.Thumbprint != _root.Thumbprint)
                {
                    roots.Add(other);
                }
            }
        }

        return roots;
    }

    private static ECDsa ReadMatchingKey(X509Certificate2 certificate, string keyPath, string certPath)
    {
        if (!File.Exists(keyPath))
        {
            throw new InvalidDataException($"{keyPath} is missing: the key of {certPath} is needed to sign");
        }

        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(keyPath));
            using ECDsa? publicKey = certificate.GetECDsaPublicKey();
            if (publicKey is null || !publicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
            {
                throw new InvalidDataException($"{keyPath} is not the key of {certPath}");
            }

            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    private static bool ChainsTo(X509Certificate2 certificate, X509Certificate2 root, out string? status)
    {
        using var chain = new X509Chain { ChainPolicy = MeshChainPolicy.Create([root]) };
        bool ok = chain.Build(certificate);
        status = ok ? null : string.Join(", ", chain.ChainStatus.Select(s => s.Status.ToString()));
        return ok;
    }

    private static X509Extension TrustDomainSan(string trustDomain)
    {
        var builder = new SubjectAlternativeNameBuilder();
        builder.AddUri(new Uri($"spiffe://{trustDomain}"));
        return builder.Build();
    }

    private static string? ReadTrustDomain(X509Certificate2 root)
    {
        foreach (string uri in PeerCertificateVerifier.ReadUriSans(root))
        {
            if (uri.StartsWith("spiffe://", StringComparison.Ordinal) && SpiffeId.IsTrustDomain(uri["spiffe://".Length..]))
            {
                return uri["spiffe://".Length..];
            }
        }

        return null;
    }

    private static byte[] NewSerial()
    {
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        return serial;
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    private static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
}
