using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// What one request's rule does to it on the way through: the path and Host rewritten, request and response
/// headers modified, and the X-Forwarded-* headers a backend expects of a gateway. The copying itself is YARP's.
/// </summary>
internal sealed class ForwardTransformer(RulePlan plan, string path, string host) : HttpTransformer
{
    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        proxyRequest.RequestUri = RequestUtilities.MakeDestinationAddress(destinationPrefix, new PathString(path), httpContext.Request.QueryString);

        // The backend sees the host the client asked for (as Envoy passes it), unless the rule rewrites it.
        proxyRequest.Headers.Host = host;
        string client = httpContext.Connection.RemoteIpAddress?.ToString() ?? "";
        proxyRequest.Headers.Remove("X-Forwarded-For");
        string? earlier = httpContext.Request.Headers["X-Forwarded-For"];
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-For", string.IsNullOrEmpty(earlier) ? client : earlier + ", " + client);
        proxyRequest.Headers.Remove("X-Forwarded-Proto");
        proxyRequest.Headers.TryAddWithoutValidation("X-Forwarded-Proto", httpContext.Request.Scheme);

        if (plan.RequestHeaders is { } modifier)
        {
            Modify(proxyRequest.Headers, proxyRequest.Content?.Headers, modifier);
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        bool proceed = await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        if (proxyResponse is not null && plan.ResponseHeaders is { } modifier)
        {
            IHeaderDictionary headers = httpContext.Response.Headers;
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

        return proceed;
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
