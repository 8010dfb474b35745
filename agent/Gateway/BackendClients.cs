using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using NodeMesh.State;

namespace NodeMesh.Gateway;

/// <summary>
/// The HTTP clients the forwarder sends through, one per endpoint (each with its own connection pool): to a mesh
/// workload, connections are tunnel flows the <see cref="MeshServiceConnector"/> opens under the gateway's identity
/// (never a plaintext socket); to a plain backend, TCP, or TLS where its policy says (BackendTLSPolicy).
/// </summary>
internal sealed class BackendClients(MeshServiceConnector mesh, TimeSpan connectTimeout, ILogger logger)
{
    /// <summary>A client whose every connection is a tunnel flow to <paramref name="endpoint"/>'s <paramref name="targetPort"/>.</summary>
    public HttpMessageInvoker ToWorkload(string service, Workload endpoint, int targetPort, CircuitBreakerConfig limits)
    {
        SocketsHttpHandler handler = Handler(limits);
        handler.ConnectCallback = async (context, cancellationToken) =>
        {
            try
            {
                context.InitialRequestMessage.Options.TryGetValue(ForwardTransformer.TraceParentOption, out string? traceParent);
                context.InitialRequestMessage.Options.TryGetValue(ForwardTransformer.PrincipalOption, out string? principal);
                return await mesh.ConnectAsync(endpoint, targetPort, traceParent, principal, cancellationToken);
            }
            catch (MeshBackendException ex)
            {
                GatewayLog.MeshConnectFailed(logger, service, endpoint.Name, ex.Message);
                throw new HttpRequestException(ex.Message, ex);
            }
        };
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>
    /// A client to a plain backend; with <paramref name="tls"/>, each connection is TLS that this client sets up
    /// itself (the handler would take the SNI and the name to check from the request's Host, which is the client's),
    /// with the policy's host name as SNI and as the name the certificate must hold, and its CA (or the system's roots).
    /// </summary>
    public HttpMessageInvoker ToAddress(BackendTlsConfig? tls, CircuitBreakerConfig limits)
    {
        SocketsHttpHandler handler = Handler(limits);
        if (tls is not null)
        {
            X509Certificate2Collection? roots = tls.CaFile.Length > 0 ? LoadRoots(tls.CaFile) : null;
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    var stream = new SslStream(new System.Net.Sockets.NetworkStream(socket, ownsSocket: true));
                    await stream.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                    {
                        TargetHost = tls.Hostname,
                        EnabledSslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,
                        ApplicationProtocols = [SslApplicationProtocol.Http11],
                        CertificateChainPolicy = roots is null ? null : Identity.MeshChainPolicy.Create(roots),
                    }, cancellationToken);
                    return stream;
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            };
        }

        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <exception cref="InvalidDataException">The file cannot be read or holds no certificate.</exception>
    public static X509Certificate2Collection LoadRoots(string caFile)
    {
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(caFile);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new InvalidDataException($"{caFile}: {ex.Message}", ex);
        }

        return roots.Count > 0 ? roots : throw new InvalidDataException($"{caFile}: no PEM certificate in it");
    }

    // A proxy's client: no proxy of its own, no redirects followed, no cookies kept, bodies passed as they are.
    private SocketsHttpHandler Handler(CircuitBreakerConfig limits) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        ConnectTimeout = connectTimeout,
        MaxConnectionsPerServer = limits.MaxConnections > 0 ? limits.MaxConnections : int.MaxValue,
        EnableMultipleHttp2Connections = true,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
        // The gateway writes the trace context itself (its own span's), not the handler's.
        ActivityHeadersPropagator = null,
    };
}
