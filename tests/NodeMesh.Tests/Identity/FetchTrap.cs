using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NodeMesh.Tests.Identity;

/// <summary>
/// A plain TCP listener standing in for the HTTP server an attacker's certificate points to (its AIA caIssuers
/// and CRL distribution point URLs): it counts every connection and never answers, as a slow server would, so a
/// chain build that fetches from it both shows up here and blocks.
/// </summary>
internal sealed class FetchTrap : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _held = [];
    private readonly Task _loop;
    private int _connections;

    /// <param name="listener">A socket already bound and listening (possibly inside another namespace).</param>
    public FetchTrap(Socket listener)
    {
        _listener = listener;
        EndPoint = (IPEndPoint)listener.LocalEndPoint!;
        _loop = AcceptAsync();
    }

    /// <summary>A trap on 127.0.0.1 in the current namespace.</summary>
    public FetchTrap()
        : this(ListenOnLoopback())
    {
    }

    public IPEndPoint EndPoint { get; }

    public Uri Url => new($"http://{EndPoint}/ca.crt");

    public int Connections => Volatile.Read(ref _connections);

    public static Socket ListenOnLoopback()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        socket.Listen(128);
        return socket;
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            try
            {
                Socket socket = await _listener.AcceptAsync(_stop.Token);
                Interlocked.Increment(ref _connections);
                lock (_held)
                {
                    _held.Add(socket);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
        lock (_held)
        {
            _held.ForEach(s => s.Dispose());
        }

        _stop.Dispose();
    }
}

/// <summary>Certificates from a CA nobody trusts, carrying URLs that a careless chain builder would fetch.</summary>
internal static class UntrustedCertificates
{
    /// <summary>
    /// A leaf for <paramref name="spiffeId"/> signed by a fresh, untrusted CA that is not sent along, with an AIA
    /// caIssuers URL (1.3.6.1.5.5.7.1.1) and a CRL distribution point (2.5.29.31) at <paramref name="url"/>.
    /// </summary>
    public static X509Certificate2 WithFetchUrls(string spiffeId, Uri url)
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=untrusted test CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using X509Certificate2 ca = caRequest.CreateSelfSigned(now.AddHours(-1), now.AddDays(1));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(spiffeId));
        request.CertificateExtensions.Add(san.Build(true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        request.CertificateExtensions.Add(new X509Extension("1.3.6.1.5.5.7.1.1",
            new X509AuthorityInformationAccessExtension(null, [url.ToString()]).RawData, critical: false));
        request.CertificateExtensions.Add(new X509Extension("2.5.29.31",
            CertificateRevocationListBuilder.BuildCrlDistributionPointExtension([url.ToString()]).RawData, critical: false));
        using X509Certificate2 leaf = request.Create(ca, now.AddHours(-1), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        using X509Certificate2 withKey = leaf.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// A TLS 1.3 client handshake over <paramref name="socket"/> presenting <paramref name="certificate"/> (its
    /// issuer not sent, nothing fetched on this side), then a one-byte read: under TLS 1.3 a server's refusal of
    /// the client certificate arrives after the client's handshake ended. Returns how the server answered.
    /// </summary>
    public static async Task<string> PresentAsync(Socket socket, X509Certificate2 certificate, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "nodemesh",
                EnabledSslProtocols = SslProtocols.Tls13,
                ClientCertificateContext = SslStreamCertificateContext.Create(certificate, null, offline: true),
                // Who the server is does not matter here, only what it does with our certificate.
                RemoteCertificateValidationCallback = (_, server, _, _) => server is not null,
            }, deadline.Token);
            int read = await tls.ReadAsync(new byte[1], deadline.Token);
            return read == 0 ? "closed" : "answered";
        }
        catch (OperationCanceledException)
        {
            return "timed out";
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException)
        {
            return "refused";
        }
    }
}
