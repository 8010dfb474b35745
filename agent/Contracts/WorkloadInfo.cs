namespace NodeMesh.Contracts;

/// <summary>A workload as registered with the agent through the local API.</summary>
public sealed record WorkloadInfo
{
    public string Name { get; init; } = "";
    public string Ip { get; init; } = "";
    public string Identity { get; init; } = "";
    public string Netns { get; init; } = "";

    /// <summary>"PERMISSIVE" (default) or "STRICT".</summary>
    public string? Mode { get; init; }

    public IReadOnlyDictionary<string, string>? Labels { get; init; }

    /// <summary>
    /// Inode and device of the network namespace when it was registered, recorded by the agent: a saved path that
    /// later names another namespace is refused. A client may set them to have the agent check its namespace.
    /// </summary>
    public ulong? NetnsInode { get; init; }

    public ulong? NetnsDevice { get; init; }

    /// <summary>A pod registered by the CNI shim: its sandbox's container id and its uid.</summary>
    public string? ContainerId { get; init; }

    public string? PodUid { get; init; }

    /// <summary>Where the registration came from: "config", "api" or "cni". Set by the agent.</summary>
    public string? Source { get; init; }

    /// <summary>
    /// The workload identity's certificate, set by the agent: "valid until &lt;time&gt;", "unavailable: &lt;why&gt;"
    /// (flows of the workload are refused meanwhile), or "pending" while the first one is being fetched.
    /// </summary>
    public string? Certificate { get; init; }

    /// <summary>The capture, set by the agent: "installed" with what it does with IPv6.</summary>
    public string? Capture { get; init; }
}
