namespace NodeMesh.Discovery.Kubernetes;

/// <summary>An EndpointSlice of a service: its ports (named targetPorts resolved by the endpoints controller) and its pods.</summary>
internal sealed record ClusterEndpointSlice(string Namespace, string Name, string Service, IReadOnlyList<ClusterSlicePort> Ports, IReadOnlyList<ClusterEndpoint> Endpoints)
{
    public string Key => $"{Namespace}/{Name}";
}

/// <param name="Name">The service port's name this slice port is for ("" for an unnamed single port).</param>
internal sealed record ClusterSlicePort(string Name, int Port);

/// <summary>An endpoint; <paramref name="Pod"/> is the targetRef's pod name (null when it is not a pod).</summary>
internal sealed record ClusterEndpoint(string? Pod, string? PodNamespace, bool Ready);
