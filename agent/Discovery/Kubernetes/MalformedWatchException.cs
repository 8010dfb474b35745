namespace NodeMesh.Discovery.Kubernetes;

/// <summary>A list or watch answer that is not what the API serves (not JSON, no type, no resourceVersion): listed again.</summary>
internal sealed class MalformedWatchException(string message, Exception? inner = null) : Exception(message, inner);
