namespace NodeMesh.Contracts;

/// <summary>
/// A pod as the CNI shim knows it from the container runtime (CNI_ARGS, CNI_NETNS, CNI_IFNAME, the previous
/// plug-in's result). On "pod-add" and "pod-check" the pod's network namespace travels with the request as a file
/// descriptor (SCM_RIGHTS); <see cref="Netns"/> is the runtime's path, kept to name it and to find it after a restart.
/// </summary>
public sealed record PodInfo
{
    public string Namespace { get; init; } = "";
    public string Name { get; init; } = "";
    public string? Uid { get; init; }

    /// <summary>When the runtime passed it (most do not; the kubernetes source then knows it).</summary>
    public string? ServiceAccount { get; init; }

    /// <summary>The sandbox's container id (CNI_CONTAINERID): an ADD, CHECK and DEL of the same attachment share it.</summary>
    public string ContainerId { get; init; } = "";

    public string? Interface { get; init; }
    public string? Netns { get; init; }

    /// <summary>The pod's addresses from the network plug-in's result, without prefix length.</summary>
    public IReadOnlyList<string>? Ips { get; init; }
}
