using System.Collections.Concurrent;
using System.Diagnostics;
using NodeMesh.State;

namespace NodeMesh.Proxy.Outbound;

/// <summary>
/// Chooses a service's endpoint for each flow: the power of two choices on flows in progress (two endpoints at
/// random, the less busy one), among the endpoints not marked down. An endpoint whose connect failed is marked
/// down for <see cref="DownFor"/> (passive health checking, like Envoy's outlier detection); if all are down,
/// all are tried again rather than none.
/// </summary>
internal sealed class ServiceBalancer
{
    public static readonly TimeSpan DownFor = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<(string Service, string Endpoint), EndpointState> _states = new();

    /// <summary>The endpoint for the next flow, skipping <paramref name="tried"/>; null when every endpoint was tried.</summary>
    public Workload? Pick(MeshService service, IReadOnlyList<Workload> endpoints, IReadOnlyCollection<string> tried, Random random)
    {
        long now = Stopwatch.GetTimestamp();
        List<Workload> open = [.. endpoints.Where(e => !tried.Contains(e.Name))];
        if (open.Count == 0)
        {
            return null;
        }

        List<Workload> up = [.. open.Where(e => !State(service, e).IsDown(now))];
        return Choose(up.Count > 0 ? up : open, e => State(service, e).InFlight, random);
    }

    /// <summary>The power of two choices: of two distinct candidates at random, the one with fewer flows in progress.</summary>
    internal static Workload Choose(IReadOnlyList<Workload> candidates, Func<Workload, int> load, Random random)
    {
        if (candidates.Count == 1)
        {
            return candidates[0];
        }

        int first = random.Next(candidates.Count);
        int second = random.Next(candidates.Count - 1);
        if (second >= first)
        {
            second++;
        }

        return load(candidates[second]) < load(candidates[first]) ? candidates[second] : candidates[first];
    }

    /// <summary>A flow to the endpoint begins; dispose the result when it ends.</summary>
    public Lease Begin(MeshService service, Workload endpoint) => new(State(service, endpoint));

    /// <summary>A connect to the endpoint failed: no new flow goes there for <see cref="DownFor"/> while others are up.</summary>
    /// <returns>True if it was up until now (an ejection to count).</returns>
    public bool MarkDown(MeshService service, Workload endpoint) => State(service, endpoint).MarkDown(Stopwatch.GetTimestamp() + (long)(DownFor.TotalSeconds * Stopwatch.Frequency));

    public bool IsDown(MeshService service, Workload endpoint) => State(service, endpoint).IsDown(Stopwatch.GetTimestamp());

    /// <summary>Forgets the endpoints of services no longer registered (called rarely: on registry changes).</summary>
    public void Retain(IEnumerable<MeshService> services)
    {
        var names = services.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        foreach ((string service, string endpoint) in _states.Keys.Where(k => !names.Contains(k.Service)).ToList())
        {
            _states.TryRemove((service, endpoint), out _);
        }
    }

    private EndpointState State(MeshService service, Workload endpoint) => _states.GetOrAdd((service.Name, endpoint.Name), _ => new EndpointState());

    internal sealed class EndpointState
    {
        private int _inFlight;
        private long _downUntil;

        public int InFlight => Volatile.Read(ref _inFlight);

        public bool IsDown(long now) => Volatile.Read(ref _downUntil) > now;

        public bool MarkDown(long until) => Interlocked.Exchange(ref _downUntil, until) <= Stopwatch.GetTimestamp();

        public void Enter() => Interlocked.Increment(ref _inFlight);

        public void Exit() => Interlocked.Decrement(ref _inFlight);
    }

    internal readonly struct Lease : IDisposable
    {
        private readonly EndpointState _state;

        public Lease(EndpointState state)
        {
            _state = state;
            state.Enter();
        }

        public void Dispose() => _state.Exit();
    }
}
