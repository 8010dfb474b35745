using System.Net;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>The API server answered a request with an error status (its Status message kept, for the log line).</summary>
internal sealed class KubernetesApiException(HttpStatusCode status, string message) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;

    /// <summary>410: the resourceVersion (or continue token) asked for is older than the server keeps: list again.</summary>
    public bool IsGone => Status == HttpStatusCode.Gone;

    public bool IsAuthorization => Status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden;
}
