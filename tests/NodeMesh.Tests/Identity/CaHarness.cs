using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>
/// A mesh CA in a temporary directory, its CA service on loopback and a placement table the tests fill in
/// (node name to the identities registered on it). Everything is removed on dispose.
/// </summary>
internal sealed class CaHarness : IAsyncDisposable
{
    public const string TrustDomain = "cluster.local";

    private readonly ConcurrentDictionary<(string Node, SpiffeId Identity), bool> _placements = new();
    private CaServer? _server;

    public CaHarness(bool intermediate = false, TimeSpan? leafLifetime = null)
    {
        Dir = TempDir.Create("nm-ca");
        Ca = CertificateAuthority.Create(Dir, TrustDomain, TimeSpan.FromDays(1), intermediate ? TimeSpan.FromHours(12) : null);
        Tokens = JoinTokens.Open(Dir);
        Options = new CaServerOptions
        {
            LeafLifetime = leafLifetime ?? TimeSpan.FromHours(1),
            NodeLifetime = leafLifetime ?? TimeSpan.FromHours(1),
            RequestTimeout = TimeSpan.FromSeconds(5),
        };
    }

    public string Dir { get; }

    public CertificateAuthority Ca { get; }

    public JoinTokens Tokens { get; private set; }

    public CaServerOptions Options { get; }

    public CaServer Server => _server ?? throw new InvalidOperationException("CA service not started");

    public RecordingLogger<CaServer> Logger { get; } = new();

    public IPEndPoint EndPoint { get; private set; } = new(IPAddress.Loopback, 0);

    public ConcurrentQueue<CaDecision> Decisions { get; } = new();

    /// <summary>Fixes the port before the service starts, so clients can be pointed at a CA that is not up yet.</summary>
    public void ReservePort() => EndPoint = new IPEndPoint(IPAddress.Loopback, CaServiceTests.FreePort());

    /// <summary>Starts (or restarts, on the same port) the CA service.</summary>
    public CaServer Start()
    {
        _server = new CaServer(EndPoint, TrustDomain, Ca, Tokens, (node, id) => _placements.ContainsKey((node, id)) ? null : $"{id} is not registered on node {node}", Options, Logger);
        _server.Decided += Decisions.Enqueue;
        _server.Start();
        EndPoint = _server.EndPoint;
        return _server;
    }

    public async Task StopAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
            _server = null;
        }
    }

    /// <summary>Stops the CA service and starts it again on the same port, its join tokens read again from its directory (a CA restart).</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        Tokens = JoinTokens.Open(Dir);
        Start();
    }

    public void Place(string node, SpiffeId identity) => _placements[(node, identity)] = true;

    public CaClient Client(Func<X509Certificate2Collection>? trustBundle = null) =>
        new(EndPoint, TrustDomain, trustBundle ?? (() => Ca.TrustBundle.Roots), TimeSpan.FromSeconds(5));

    /// <summary>Waits for the CA to record a decision matching <paramref name="match"/> (decisions may land after the client returned).</summary>
    public async Task<CaDecision> DecisionAsync(Func<CaDecision, bool> match)
    {
        for (int i = 0; i < 200; i++)
        {
            CaDecision? found = Decisions.FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            await Task.Delay(25);
        }

        throw new TimeoutException("the CA recorded no such decision; it recorded: " + string.Join("; ", Decisions) + "; log: " + string.Join("; ", Logger.Entries));
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        Ca.Dispose();
        TempDir.Delete(Dir);
    }
}

internal static class TempDir
{
    public static string Create(string prefix)
    {
        string dir = Path.Combine(Path.GetTempPath(), prefix + "-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void Delete(string dir)
    {
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}

/// <summary>Certificates made directly with a CA's key from disk: the ones the CA itself would never issue (expired, foreign).</summary>
internal static class TestCertificates
{
    public static X509Certificate2 SignWithRootKey(string caDir, SpiffeId identity, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var caKey = ECDsa.Create();
        caKey.ImportFromPem(File.ReadAllText(Path.Combine(caDir, "ca.key")));
        using X509Certificate2 root = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(caDir, "ca.crt")));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(identity.Uri));
        request.CertificateExtensions.Add(san.Build(true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        using X509Certificate2 cert = request.Create(root.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), notBefore, notAfter, [1, 2, 3, 4]);
        using X509Certificate2 withKey = cert.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public static string KeyPem(X509Certificate2 certificate)
    {
        using ECDsa key = certificate.GetECDsaPrivateKey()!;
        return key.ExportPkcs8PrivateKeyPem();
    }
}

/// <summary>
/// A TLS 1.3 server on loopback that requires a client certificate, records each one it was shown, and echoes
/// bytes back: enough to see which certificate a new connection presents, and that an old one keeps working.
/// </summary>
internal sealed class EchoTlsServer : IAsyncDisposable
{
    private readonly Socket _listener = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    private readonly SslStreamCertificateContext _certificate;
    private readonly PeerCertificateVerifier _verifier;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public EchoTlsServer(SslStreamCertificateContext certificate, PeerCertificateVerifier verifier)
    {
        _certificate = certificate;
        _verifier = verifier;
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _loop = AcceptLoopAsync();
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>Serial numbers of the client certificates accepted, in order; or the reason one was refused.</summary>
    public ConcurrentQueue<string> Seen { get; } = new();

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _ = ServeAsync(socket);
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        try
        {
            await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = _certificate,
                ClientCertificateRequired = true,
                EnabledSslProtocols = SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, cert, chain, _) =>
                {
                    if (_verifier.TryVerify(cert, chain, out _, out string? reason))
                    {
                        Seen.Enqueue(((X509Certificate2)cert!).SerialNumber);
                        return true;
                    }

                    Seen.Enqueue("refused: " + reason);
                    return false;
                },
            }, _stop.Token);
            byte[] buffer = new byte[4096];
            int read;
            while ((read = await tls.ReadAsync(buffer, _stop.Token)) > 0)
            {
                await tls.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception)
        {
            // The client went away or was refused; the test looks at Seen.
        }
    }

    /// <summary>Connects with <paramref name="clientCertificate"/>, checking the server against <paramref name="verifier"/>.</summary>
    public async Task<SslStream> ConnectAsync(SslStreamCertificateContext clientCertificate, PeerCertificateVerifier verifier)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(EndPoint);
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = SslProtocols.Tls13,
            ClientCertificateContext = clientCertificate,
            RemoteCertificateValidationCallback = (_, cert, chain, _) => verifier.TryVerify(cert, chain, out _, out _),
        });
        return tls;
    }

    public static async Task EchoAsync(SslStream tls, string text)
    {
        byte[] sent = System.Text.Encoding.UTF8.GetBytes(text);
        await tls.WriteAsync(sent);
        byte[] received = new byte[sent.Length];
        await tls.ReadExactlyAsync(received).AsTask().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(sent, received);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>Keeps what was logged, so tests can check that refusals are logged (and show unexpected errors).</summary>
internal sealed class RecordingLogger<T> : Microsoft.Extensions.Logging.ILogger<T>
{
    public ConcurrentQueue<(Microsoft.Extensions.Logging.LogLevel Level, string Message)> Entries { get; } = new();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
        Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, formatter(state, exception) + (exception is null ? "" : " " + exception)));
}
