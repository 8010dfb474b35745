using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Identity;

/// <summary>
/// The roots a peer's certificate may chain to, replaceable at run time. During a root rotation it holds the
/// old and the new root together (the overlap), so chains to either verify; afterwards the old one is dropped.
/// Invariant: <see cref="Roots"/> is a snapshot that is never modified after it is published; an update
/// publishes a new collection, so a handshake in progress keeps the roots it started with.
/// </summary>
internal sealed class TrustBundle
{
    /// <summary>A bundle larger than this is refused: it is a handful of roots, not a certificate store.</summary>
    public const int MaxPemChars = 256 * 1024;

    private X509Certificate2Collection _roots;

    public TrustBundle(X509Certificate2Collection roots)
    {
        _roots = Validated(roots);
    }

    /// <summary>Raised after <see cref="Roots"/> changed.</summary>
    public event Action<TrustBundle>? Changed;

    /// <summary>The current roots. Do not modify the collection.</summary>
    public X509Certificate2Collection Roots => Volatile.Read(ref _roots);

    public static TrustBundle FromPem(string pem) => new(ParsePem(pem));

    public static TrustBundle FromFile(string path) => new(ReadFile(path));

    /// <summary>Reads a PEM file of root certificates, with errors that name the file.</summary>
    public static X509Certificate2Collection ReadFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new InvalidDataException($"trust bundle {path} does not exist");
        }

        if (info.Length > MaxPemChars)
        {
            throw new InvalidDataException($"trust bundle {path} is larger than {MaxPemChars} bytes");
        }

        try
        {
            return ParsePem(File.ReadAllText(path));
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"trust bundle {path}: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Parses PEM text holding one or more CA certificates (and nothing else that looks like a certificate).
    /// Throws <see cref="InvalidDataException"/> with a readable reason when it is not such a bundle.
    /// </summary>
    public static X509Certificate2Collection ParsePem(ReadOnlySpan<char> pem)
    {
        if (pem.Length > MaxPemChars)
        {
            throw new InvalidDataException($"trust bundle is larger than {MaxPemChars} characters");
        }

        X509Certificate2Collection roots = [];
        try
        {
            roots.ImportFromPem(pem);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"trust bundle is not valid PEM: {ex.Message}", ex);
        }

        return Validated(roots);
    }

    /// <summary>Publishes <paramref name="roots"/> if they differ from the current ones; returns whether they did.</summary>
    public bool Update(X509Certificate2Collection roots)
    {
        X509Certificate2Collection validated = Validated(roots);
        if (SameRoots(Roots, validated))
        {
            return false;
        }

        Volatile.Write(ref _roots, validated);
        Changed?.Invoke(this);
        return true;
    }

    public string ExportPem() => ExportPem(Roots);

    public static string ExportPem(X509Certificate2Collection certificates) =>
        string.Concat(certificates.Select(c => c.ExportCertificatePem() + "\n"));

    /// <summary>Whether two bundles hold the same certificates, in any order.</summary>
    public static bool SameRoots(X509Certificate2Collection a, X509Certificate2Collection b)
    {
        var left = a.Select(c => c.Thumbprint).ToHashSet(StringComparer.Ordinal);
        var right = b.Select(c => c.Thumbprint).ToHashSet(StringComparer.Ordinal);
        return left.SetEquals(right);
    }

    private static X509Certificate2Collection Validated(X509Certificate2Collection roots)
    {
        if (roots.Count == 0)
        {
            throw new InvalidDataException("trust bundle holds no certificate");
        }

        X509Certificate2Collection copy = [];
        foreach (X509Certificate2 root in roots)
        {
            X509BasicConstraintsExtension? constraints = root.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
            if (constraints is null || !constraints.CertificateAuthority)
            {
                throw new InvalidDataException($"'{SpiffeId.Printable(root.Subject)}' in the trust bundle is not a CA certificate");
            }

            copy.Add(X509CertificateLoader.LoadCertificate(root.RawData));
        }

        return copy;
    }
}
