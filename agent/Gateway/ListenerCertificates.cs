using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Gateway;

/// <summary>
/// A TLS listener's certificates, chosen per handshake by the name the client sent (SNI): an exact DNS name of a
/// certificate, then a wildcard one (<c>*.example.com</c> for <c>a.example.com</c>), else the first certificate.
/// Reloaded from their files when they change; a file that cannot be read keeps the certificates in force.
/// </summary>
internal sealed class ListenerCertificates
{
    private readonly IReadOnlyList<CertificateFilesConfig> _files;
    private Loaded _current;
    private DateTime[] _tried;

    private ListenerCertificates(IReadOnlyList<CertificateFilesConfig> files, Loaded loaded)
    {
        _files = files;
        _current = loaded;
        _tried = loaded.Stamps;
    }

    /// <exception cref="InvalidDataException">A file is missing or not a PEM certificate and its key (the message names it).</exception>
    public static ListenerCertificates Load(IReadOnlyList<CertificateFilesConfig> files) => new(files, Read(files));

    public X509Certificate2 Select(string? serverName)
    {
        Loaded loaded = Volatile.Read(ref _current);
        if (!string.IsNullOrEmpty(serverName))
        {
            string name = serverName.TrimEnd('.').ToLowerInvariant();
            if (loaded.Exact.TryGetValue(name, out X509Certificate2? exact))
            {
                return exact;
            }

            int dot = name.IndexOf('.', StringComparison.Ordinal);
            if (dot > 0 && loaded.Wildcard.TryGetValue(name[(dot + 1)..], out X509Certificate2? wildcard))
            {
                return wildcard;
            }
        }

        return loaded.Default;
    }

    /// <summary>Reads the files again if any changed since they were last tried.</summary>
    /// <returns>Null when nothing changed; else "" when the new files were taken, or why they were not (the old ones stay).</returns>
    public string? ReloadIfChanged()
    {
        DateTime[] stamps = Stamps(_files);
        if (stamps.SequenceEqual(_tried))
        {
            return null;
        }

        _tried = stamps;
        try
        {
            Volatile.Write(ref _current, Read(_files));
            return "";
        }
        catch (InvalidDataException ex)
        {
            return ex.Message;
        }
    }

    private static Loaded Read(IReadOnlyList<CertificateFilesConfig> files)
    {
        DateTime[] stamps = Stamps(files);
        var exact = new Dictionary<string, X509Certificate2>(StringComparer.Ordinal);
        var wildcard = new Dictionary<string, X509Certificate2>(StringComparer.Ordinal);
        X509Certificate2? first = null;
        foreach (CertificateFilesConfig file in files)
        {
            X509Certificate2 certificate;
            try
            {
                using X509Certificate2 pem = X509Certificate2.CreateFromPemFile(file.CertFile, file.KeyFile);
                // Exported and imported once: on Linux a PEM key works for TLS as is, but a PKCS#12 import is what SslStream caches best.
                certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
            {
                throw new InvalidDataException($"{file.CertFile} with {file.KeyFile}: {ex.Message}", ex);
            }

            first ??= certificate;
            foreach (string name in DnsNames(certificate))
            {
                if (name.StartsWith("*.", StringComparison.Ordinal))
                {
                    wildcard.TryAdd(name[2..], certificate);
                }
                else
                {
                    exact.TryAdd(name, certificate);
                }
            }
        }

        return new Loaded(first ?? throw new InvalidDataException("no certificate"), exact, wildcard, stamps);
    }

    private static IEnumerable<string> DnsNames(X509Certificate2 certificate)
    {
        foreach (X509Extension extension in certificate.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                foreach (string name in san.EnumerateDnsNames())
                {
                    yield return name.ToLowerInvariant();
                }
            }
        }
    }

    private static DateTime[] Stamps(IReadOnlyList<CertificateFilesConfig> files) =>
        [.. files.SelectMany(f => new[] { File.GetLastWriteTimeUtc(f.CertFile), File.GetLastWriteTimeUtc(f.KeyFile) })];

    private sealed record Loaded(X509Certificate2 Default, Dictionary<string, X509Certificate2> Exact, Dictionary<string, X509Certificate2> Wildcard, DateTime[] Stamps);
}
