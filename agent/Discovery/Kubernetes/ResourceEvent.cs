namespace NodeMesh.Discovery.Kubernetes;

internal enum ResourceEventKind
{
    /// <summary>A full listing: <see cref="ResourceEvent{T}.Items"/> replace whatever was known.</summary>
    Listed,
    Added,
    Modified,
    Deleted,

    /// <summary>A watch from <see cref="ResourceEvent{T}.ResourceVersion"/> is open (answered 200): the server is reachable, however quiet the resource.</summary>
    Watching,

    /// <summary>Nothing changed up to <see cref="ResourceEvent{T}.ResourceVersion"/> (the watch is current).</summary>
    Bookmark,

    /// <summary>The list or watch failed (<see cref="ResourceEvent{T}.Reason"/>, <see cref="ResourceEvent{T}.Error"/>); it is retried after a backoff.</summary>
    Failed,
}

/// <summary>
/// What one resource's list and watch tell, in order. After a Failed event of reason "gone" or "malformed" the
/// next success is a Listed one; after "disconnected" (or "error", "unauthorized", "forbidden") the watch resumes from
/// the last resourceVersion, so no change is lost or told twice.
/// </summary>
internal sealed record ResourceEvent<T>(ResourceEventKind Kind, string ResourceVersion, T? Object = null, IReadOnlyList<T>? Items = null, string? Reason = null, string? Error = null)
    where T : class;
