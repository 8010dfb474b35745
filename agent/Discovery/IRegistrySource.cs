using NodeMesh.Contracts;
using NodeMesh.State;

namespace NodeMesh.Discovery;

/// <summary>
/// Where the registry of other nodes and their workloads comes from (discovery.source). A source feeds
/// <see cref="WorkloadRegistry.ReplaceRemote"/> and is told of this node's own workloads so it can publish them.
/// </summary>
internal interface IRegistrySource : IAsyncDisposable
{
    /// <summary>Begins to sync (returns at once; the first sync completes <see cref="Synced"/>).</summary>
    void Start();

    /// <summary>Completes when the registry reflects the source once (the first listing).</summary>
    Task Synced { get; }

    /// <summary>A local workload was captured (or changed): others must learn of it.</summary>
    void Publish(Workload workload);

    /// <summary>A local workload was removed.</summary>
    void Unpublish(string name);

    /// <summary>Withdraws this node's entries (an orderly stop), best effort within <paramref name="timeout"/>.</summary>
    Task WithdrawAsync(TimeSpan timeout);

    RegistryStatus Status();
}
