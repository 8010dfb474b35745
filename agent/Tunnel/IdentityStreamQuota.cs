using System.Collections.Concurrent;
using NodeMesh.Identity;

namespace NodeMesh.Tunnel;

/// <summary>
/// Counts the streams each caller identity has open on this agent across all its tunnel connections, so one
/// workload (or a hostile peer opening many connections) cannot take every stream the agent will serve.
/// </summary>
internal sealed class IdentityStreamQuota(int limitPerIdentity)
{
    private readonly ConcurrentDictionary<SpiffeId, StrongBoxInt> _counts = new();

    public int LimitPerIdentity { get; } = limitPerIdentity;

    public int Current(SpiffeId identity) => _counts.TryGetValue(identity, out StrongBoxInt? box) ? Volatile.Read(ref box.Value) : 0;

    public bool TryAcquire(SpiffeId identity)
    {
        StrongBoxInt box = _counts.GetOrAdd(identity, static _ => new StrongBoxInt());
        if (Interlocked.Increment(ref box.Value) <= LimitPerIdentity)
        {
            return true;
        }

        Interlocked.Decrement(ref box.Value);
        return false;
    }

    /// <remarks>
    /// Entries are never removed: identities are certified by the mesh CA, so the table is bounded by the mesh's
    /// identities, and removing a box that a racing acquire already holds would lose its count.
    /// </remarks>
    public void Release(SpiffeId identity)
    {
        if (_counts.TryGetValue(identity, out StrongBoxInt? box))
        {
            Interlocked.Decrement(ref box.Value);
        }
    }

    private sealed class StrongBoxInt
    {
        public int Value;
    }
}
