using System.Net;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Gateway;

/// <summary>
/// The HTTP clients the forwarder sends through, each with its own connection pool: one for backends outside the
/// mesh (plain TCP to host:port), one for mesh services, whose connections are tunnel flows opened by the
/// <see cref="MeshServiceConnector"/> under the gateway's identity (never a plaintext socket).
/// </summary>
internal sealed class BackendInvokers : IDisposable
{
    public BackendInvokers(MeshServiceConnector mesh, TimeSpan connectTimeout, ILogger logger)
    {
        Plain = new HttpMessageInvoker(Handler(connectTimeout), disposeHandler: true);
        SocketsHttpHandler meshHandler = Handler(connectTimeout);
        meshHandler.ConnectCallback = async (context, cancellationToken) =>
        {
            string host = context.DnsEndPoint.Host;
            if (!host.EndsWith(BackendTarget.MeshSuffix, StringComparison.Ordinal))
            {
                // Only the gateway's own prefixes reach this client; anything else is a bug, refused rather than dialled.
                throw new HttpRequestException($"{host} is not a mesh backend");
            }

            try
            {
                context.InitialRequestMessage.Options.TryGetValue(ForwardTransformer.TraceParentOption, out string? traceParent);
                return await mesh.ConnectAsync(host[..^BackendTarget.MeshSuffix.Length], context.DnsEndPoint.Port, traceParent, cancellationToken);
            }
            catch (MeshBackendException ex)
            {
                GatewayLog.MeshConnectFailed(logger, host[..^BackendTarget.MeshSuffix.Length], context.DnsEndPoint.Port, ex.Message);
                throw new HttpRequestException(ex.Message, ex);
            }
        };
        Mesh = new HttpMessageInvoker(meshHandler, disposeHandler: true);
    }

    public HttpMessageInvoker Plain { get; }

    public HttpMessageInvoker Mesh { get; }

    public HttpMessageInvoker For(BackendTarget target) => target.MeshService is null ? Plain : Mesh;

    public void Dispose()
    {
        Plain.Dispose();
        Mesh.Dispose();
    }

    // A proxy's client: no proxy of its own, no redirects followed, no cookies kept, bodies passed as they are.
    private static SocketsHttpHandler Handler(TimeSpan connectTimeout) => new()
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        ConnectTimeout = connectTimeout,
        EnableMultipleHttp2Connections = true,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
        // The gateway writes the trace context itself (its own span's), not the handler's.
        ActivityHeadersPropagator = null,
    };
}
