using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.Extensions.Logging;
using NodeMesh.State;

namespace NodeMesh.Gateway;

/// <summary>
/// The gateway's backends, each a <see cref="BackendPool"/> made when a rule first sends to it and kept while the
/// agent runs (its endpoints follow the registry; reloaded routes reuse it). A mesh service's endpoints are its
/// workloads in the registry, each reached through the tunnel; a plain backend is one endpoint, its address.
/// </summary>
internal sealed class BackendPools(
    WorkloadRegistry registry, BackendClients clients, IReadOnlyList<BackendPolicyConfig> policies, GatewayMetrics metrics, ILogger logger) : IAsyncDisposable
{
    private static readonly BackendPolicyConfig Defaults = new();

    private readonly ConcurrentDictionary<string, Lazy<BackendPool>> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BackendPolicyConfig> _policies = policies.ToDictionary(p => p.Backend, StringComparer.Ordinal);

    /// <summary>The backend's pool, made the first time (a request's lookup allocates nothing once it exists).</summary>
    public BackendPool For(BackendTarget target) =>
        _pools.GetOrAdd(target.Display, static (_, s) => new Lazy<BackendPool>(() => s.Pools.Create(s.Target)), (Pools: this, Target: target)).Value;

    public IEnumerable<BackendPool> All => _pools.Values.Where(p => p.IsValueCreated).Select(p => p.Value);

    private BackendPool Create(BackendTarget target)
    {
        BackendPolicyConfig policy = _policies.GetValueOrDefault(target.Name) ?? Defaults;
        Func<EndpointSet> source = target.MeshService is { } service ? MeshEndpoints(service, target.Ref.Port, policy) : PlainEndpoint(target, policy);
        return new BackendPool(target, policy, source, metrics, logger);
    }

    /// <summary>The service's workloads in the registry now, read again only when the registry changed.</summary>
    private Func<EndpointSet> MeshEndpoints(string service, int port, BackendPolicyConfig policy)
    {
        EndpointSet last = new(new object(), []);
        return () =>
        {
            RegistrySnapshot snapshot = registry.Current;
            EndpointSet seen = Volatile.Read(ref last);
            if (ReferenceEquals(snapshot, seen.Version))
            {
                return seen;
            }

            var endpoints = new List<EndpointSpec>();
            MeshService? found = snapshot.Services.FirstOrDefault(s => s.Name == service);
            int targetPort = found?.Ports.FirstOrDefault(p => p.Port == port).TargetPort ?? 0;
            if (found is not null && targetPort != 0)
            {
                foreach (Workload workload in found.Endpoints.Select(snapshot.FindByName).OfType<Workload>())
                {
                    // A workload of the same name at another address or node is another endpoint (its connections are other ones).
                    string key = $"{workload.Name}@{workload.Ip}/{workload.Node}:{targetPort.ToString(CultureInfo.InvariantCulture)}";
                    endpoints.Add(new EndpointSpec(workload.Name, key, $"http://{BackendTarget.MeshHost(service)}:{port.ToString(CultureInfo.InvariantCulture)}",
                        () => clients.ToWorkload(service, workload, targetPort, policy.CircuitBreaker)));
                }
            }

            var set = new EndpointSet(snapshot, endpoints);
            Volatile.Write(ref last, set);
            return set;
        };
    }

    private Func<EndpointSet> PlainEndpoint(BackendTarget target, BackendPolicyConfig policy)
    {
        // http:// even with TLS: the client's connect callback sets TLS up itself, with the policy's name.
        var set = new EndpointSet(new object(), [new EndpointSpec(target.Ref.Address, target.Ref.Address, "http://" + target.Ref.Address, () => clients.ToAddress(policy.Tls, policy.CircuitBreaker))]);
        return () => set;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (BackendPool pool in All)
        {
            await pool.DisposeAsync();
        }
    }
}
