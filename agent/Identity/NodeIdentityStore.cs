using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace NodeMesh.Identity;

/// <summary>
/// The node certificate issued by the mesh CA, kept across restarts in <c>stateDir/identity/node.pem</c>, so a
/// restarted agent renews with it (mTLS to the CA) instead of joining again with a join token that has expired
/// or been used. One file holds the private key, the certificate and its chain, so a crash can never pair a key
/// with another key's certificate; it is written to a temporary file (0600) and renamed over the old one, in a
/// directory only the owner may enter (0700). Workload keys are never stored: they are asked for again.
/// </summary>
internal sealed class NodeIdentityStore
{
    public const string DirectoryName = "identity";
    public const string FileName = "node.pem";

    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>A key, a leaf and a chain or two: anything much larger is not ours.</summary>
    private const long MaxFileBytes = 64 * 1024;

    public NodeIdentityStore(string stateDir)
    {
        Directory = Path.Combine(stateDir, DirectoryName);
        FilePath = Path.Combine(Directory, FileName);
    }

    public string Directory { get; }

    public string FilePath { get; }

    /// <summary>
    /// The stored certificate with its key and chain; null when none is stored. Throws
    /// <see cref="InvalidDataException"/> (naming the file) when the file is unreadable or not a key and its
    /// certificate; it says nothing about validity, which the caller checks against its trust bundle.
    /// </summary>
    public IssuedCertificate? Load()
    {
        string text;
        try
        {
            var info = new FileInfo(FilePath);
            if (!info.Exists)
            {
                return null;
            }

            if (info.Length > MaxFileBytes)
            {
                throw new InvalidDataException($"{FilePath} is larger than {MaxFileBytes} bytes");
            }

            text = File.ReadAllText(FilePath, Encoding.ASCII);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"cannot read {FilePath}: {ex.Message}", ex);
        }

        try
        {
            X509Certificate2Collection all = [];
            all.ImportFromPem(text);
            if (all.Count == 0)
            {
                throw new InvalidDataException($"{FilePath} holds no certificate");
            }

            using X509Certificate2 withKey = X509Certificate2.CreateFromPem(text, text);
            X509Certificate2Collection chain = [];
            for (int i = 1; i < all.Count; i++)
            {
                chain.Add(all[i]);
            }

            all[0].Dispose();

            // Round-trip through PKCS#12 (in memory) so the key is usable by OpenSSL-backed SslStream.
            X509Certificate2 usable = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
            return new IssuedCertificate(usable, chain, []);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"{FilePath} is not a node key with its certificate: {ex.Message}", ex);
        }
    }

    /// <summary>Replaces the stored certificate with <paramref name="issued"/> (key, leaf, chain), atomically.</summary>
    public void Save(IssuedCertificate issued)
    {
        using ECDsa key = issued.Certificate.GetECDsaPrivateKey()
            ?? throw new InvalidOperationException("the node certificate has no ECDSA private key to store");
        var pem = new StringBuilder();
        pem.Append(key.ExportPkcs8PrivateKeyPem()).Append('\n');
        pem.Append(issued.Certificate.ExportCertificatePem()).Append('\n');
        foreach (X509Certificate2 link in issued.Chain)
        {
            pem.Append(link.ExportCertificatePem()).Append('\n');
        }

        System.IO.Directory.CreateDirectory(Directory, PrivateDirectory);
        // The directory may predate us with a wider mode.
        File.SetUnixFileMode(Directory, PrivateDirectory);
        CertificateAuthority.ReplacePrivateFile(FilePath, pem.ToString());
    }
}
