namespace NodeMesh.Discovery;

internal enum StoreEventKind
{
    Put,
    Delete,
}

/// <summary>One change of a key in the store, at the store revision that made it.</summary>
internal readonly record struct StoreEvent(StoreEventKind Kind, string Key, ReadOnlyMemory<byte> Value, long Revision);

/// <summary>The changes of one watch response, and the store revision they bring the watcher to.</summary>
internal sealed record StoreChanges(IReadOnlyList<StoreEvent> Events, long Revision);

/// <summary>A listing of a prefix at one revision.</summary>
internal sealed record StoreListing(IReadOnlyList<KeyValuePair<string, ReadOnlyMemory<byte>>> Entries, long Revision);

/// <summary>The revisions a watch asked for were compacted away: the watcher must list again.</summary>
internal sealed class StoreCompactedException(long compactRevision)
    : Exception($"the store compacted its history up to revision {compactRevision}; listing again")
{
    public long CompactRevision { get; } = compactRevision;
}
