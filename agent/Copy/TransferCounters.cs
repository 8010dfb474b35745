using System.Runtime.CompilerServices;
using NodeMesh.Tunnel;

namespace NodeMesh.Copy;

/// <summary>
/// A flow's byte counts while it runs: each pump adds to its own direction (one writer each), and the
/// telemetry reads them at any time, so bytes are reported as they move and not only when the flow ends.
/// Reads only grow, and the final counts are these same reads.
/// </summary>
internal sealed class TransferCounters
{
    internal StrongBox<long> FromClientBox { get; } = new();

    internal StrongBox<long> ToClientBox { get; } = new();

    /// <summary>The tunnel stream whose receive path may write straight to the client socket (its bytes count toward the client).</summary>
    internal TunnelStream? Tunnel { get; set; }

    public long FromClient => Volatile.Read(ref FromClientBox.Value);

    public long ToClient => Volatile.Read(ref ToClientBox.Value) + (Tunnel?.DirectBytes ?? 0);
}
