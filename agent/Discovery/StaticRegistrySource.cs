using System.Net;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.Discovery;

/// <summary>discovery.source "static": the peer nodes and remote workloads of the config file, known from the start.</summary>
internal sealed class StaticRegistrySource(AgentConfig config, WorkloadRegistry registry) : IRegistrySource
{
    public Task Synced => Task.CompletedTask;

    public void Start()
    {
        var peers = config.Nodes.ToDictionary(n => n.Name, n => new IPEndPoint(IPAddress.Parse(n.Address), config.Ports.Tunnel), StringComparer.Ordinal);
        registry.ReplaceRemote(config.RemoteWorkloads.Select(w => new Workload(w.Name, IPAddress.Parse(w.Ip), SpiffeId.Parse(w.Identity), w.Node, null)), peers, ConfigLoader.Services(config));
    }

    public void Publish(Workload workload)
    {
        // Nothing to publish: other nodes read their own config files.
    }

    public void Unpublish(string name)
    {
    }

    public Task WithdrawAsync(TimeSpan timeout) => Task.CompletedTask;

    public RegistryStatus Status() => new()
    {
        Source = "static",
        State = "synced",
        Nodes = config.Nodes.Count,
        RemoteWorkloads = config.RemoteWorkloads.Count,
    };

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
