using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// What one attempt of one request's rule does to it on the way through: the path and Host rewritten, request and
/// response headers modified, the X-Forwarded-* headers a backend expects of a gateway, and the gateway's span as
/// the trace parent. When the response headers arrive the timeouts stop (they bound the wait for them, not a
/// long download); a response whose code the retry takes is withheld from the client. The copying is YARP's.
/// </summary>
internal sealed class ForwardTransformer(
    RulePlan plan, BackendTarget target, string path, string host, string? traceParent, IReadOnlyList<int>? withholdCodes,
    CancellationTokenSource? requestTimeout, CancellationTokenSource attemptTimeout) : HttpTransformer
{
    /// <summary>The key of the request option that hands the trace parent to the mesh connector (connections are opened outside the request's context).</summary>
    public static readonly HttpRequestOptionsKey<string> TraceParentOption = new("nodemesh.traceparent");

    /// <summary>The request option that hands the caller's principal to the mesh connector, for the flow header.</summary>
    public static readonly HttpRequestOptionsKey<string> PrincipalOption = new("nodemesh.principal");

    /// <summary>The <see cref="HttpContext.Items"/> key under which the handler leaves the caller's principal.</summary>
    public static readonly object PrincipalItem = new();

    private bool _headersArrived;

    /// <summary>The code of a response held back for a retry; null: none was.</summary>
    public int? WithheldStatus { get; private set; }

    /// <summary>A timeout (not the client) ended the attempt before its response headers.</summary>
    public bool TimedOut => !_headersArrived && attemptTimeout.IsCancellationRequested;

    /// <summary><c>p&lt;16 hex of SHA-256(principal)&gt;.HOST</c>: a DNS label, the same for every request of one caller.</summary>
    internal static string PrincipalHost(string principal, string host) =>
        "p" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(principal)).AsSpan(0, 8)) + "." + host;

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, new PathString(path), httpContext.Request.QueryString);
        if (target.MeshService is not null && httpContext.Items.TryGetValue(PrincipalItem, out object? item) && item is string principal)
        {
            // A flow carries one principal for its whole life, so a caller's requests go on connections of their
            // own: the handler keeps a connection pool per host name, and this one names the principal.
            proxyRequest.RequestUri = new UriBuilder(proxyRequest.RequestUri) { Host = PrincipalHost(principal, proxyRequest.RequestUri.Host) }.Uri;
            proxyRequest.Options.Set(PrincipalOption, principal);
        }

        if (traceParent is not null)
        {
            proxyRequest.Headers.Remove("traceparent");
            proxyRequest.Headers.TryAddWithoutValidation("traceparent", traceParent);
            proxyRequest.Options.Set(TraceParentOption, traceParent);
        }

        // The backend sees the host the client asked for (as Envoy passes it), unless the rule rewrites it.
        proxyRequest.Headers.Host = host;
        string client = httpContext.Connection.RemoteIpAddress?.ToString() ?? "";
        proxyRequest.Headers.Remove("X-Forwarded-For");
        string? earlier = httpContext.Request.Headers["X-Forwarded-For"];
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-For", string.IsNullOrEmpty(earlier) ? client : earlier + ", " + client);
        proxyRequest.Headers.Remove("X-Forwarded-Proto");
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-Proto", httpContext.Request.Scheme);

        // Only the gateway says who the client's certificate names: a client's own header of that name is dropped.
        proxyRequest.Headers.Remove("X-Forwarded-Client-Cert");
        if (httpContext.Connection.ClientCertificate is { } certificate)
        {
            proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-Client-Cert", ClientCertificates.ForwardedValue(certificate));
        }

        if (plan.RequestHeaders is { } modifier)
        {
            Modify(proxyRequest.Headers, proxyRequest.Content?.Headers, modifier);
        }

        if (target.RequestHeaders is { } backendModifier)
        {
            Modify(proxyRequest.Headers, proxyRequest.Content?.Headers, backendModifier);
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        if (proxyResponse is not null)
        {
            _headersArrived = true;
            attemptTimeout.CancelAfter(Timeout.InfiniteTimeSpan);
            requestTimeout?.CancelAfter(Timeout.InfiniteTimeSpan);
            if (withholdCodes is not null && withholdCodes.Contains((int)proxyResponse.StatusCode))
            {
                WithheldStatus = (int)proxyResponse.StatusCode;
                return false;
            }
        }

        bool proceed = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not null && proxyResponse.Headers.Contains("grpc-status"))
        {
            MoveGrpcStatusToTrailers(httpContext.Response);
        }
        if (proxyResponse is not null)
        {
            Modify(httpContext.Response.Headers, plan.ResponseHeaders);
            Modify(httpContext.Response.Headers, target.ResponseHeaders);
        }

        return proceed;
    }

    private static void Modify(IHeaderDictionary headers, HeaderModifierConfig? modifier)
    {
        if (modifier is null)
        {
            return;
        }

        foreach (HttpHeaderConfig header in modifier.Set)
        {
            headers[header.Name] = header.Value;
        }

        foreach (HttpHeaderConfig header in modifier.Add)
        {
            headers.Append(header.Name, header.Value);
        }

        foreach (string name in modifier.Remove)
        {
            headers.Remove(name);
        }
    }

    /// <summary>
    /// A gRPC error with no message is sent "trailers-only": its status in the one HEADERS frame that ends the
    /// stream. Kestrel ends a stream with a frame of its own after the headers, and gRPC clients then look for the
    /// status in trailers that never come (UNKNOWN): so the status goes to the trailers, where every client reads it.
    /// </summary>
    private static void MoveGrpcStatusToTrailers(HttpResponse response)
    {
        if (!response.SupportsTrailers())
        {
            return;
        }

        foreach (string name in new[] { "grpc-status", "grpc-message", "grpc-status-details-bin" })
        {
            if (response.Headers.Remove(name, out Microsoft.Extensions.Primitives.StringValues values))
            {
                response.AppendTrailer(name, values);
            }
        }
    }

    /// <summary>Gateway API semantics: set replaces, add appends a value, remove drops; content headers live on the content.</summary>
    private static void Modify(HttpRequestHeaders headers, HttpContentHeaders? content, HeaderModifierConfig modifier)
    {
        foreach (HttpHeaderConfig header in modifier.Set)
        {
            headers.Remove(header.Name);
            content?.Remove(header.Name);
            if (!headers.TryAddWithoutValidation(header.Name, header.Value))
            {
                content?.TryAddWithoutValidation(header.Name, header.Value);
            }
        }

        foreach (HttpHeaderConfig header in modifier.Add)
        {
            if (!headers.TryAddWithoutValidation(header.Name, header.Value))
            {
                content?.TryAddWithoutValidation(header.Name, header.Value);
            }
        }

        foreach (string name in modifier.Remove)
        {
            headers.Remove(name);
            content?.Remove(name);
        }
    }
}
