using System.Net;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>A Service with its virtual addresses (IPv4 cluster IPs) and ports.</summary>
internal sealed record ClusterService(string Namespace, string Name, IReadOnlyList<IPAddress> ClusterIps, IReadOnlyList<ClusterServicePort> Ports)
{
    public string Key => $"{Namespace}/{Name}";

    /// <summary>The name the service has in the registry (and in flow records): <c>name.namespace</c>.</summary>
    public string RegistryName => $"{Name}.{Namespace}";
}

/// <param name="TargetPort">The numeric targetPort; 0 when it names a container port (<see cref="TargetPortName"/>) or is not given (then the same as Port).</param>
internal sealed record ClusterServicePort(string Name, int Port, int TargetPort, string? TargetPortName);
