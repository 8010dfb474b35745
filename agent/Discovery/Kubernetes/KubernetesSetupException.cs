namespace NodeMesh.Discovery.Kubernetes;

/// <summary>The API server cannot be reached as configured (no kubeconfig, not in a cluster, unreadable CA): a start-up error.</summary>
internal sealed class KubernetesSetupException(string message, Exception? inner = null) : Exception(message, inner);
