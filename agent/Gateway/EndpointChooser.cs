using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Gateway;

/// <summary>
/// Which endpoint takes a request, by the backend's load-balancing policy, among those <c>available</c> says may
/// (healthy, not ejected). Pure: the pool passes what it knows, so every policy is tested without sockets.
/// </summary>
internal static class EndpointChooser
{
    /// <summary>Virtual nodes per endpoint on the hash ring: enough that one endpoint leaving moves about 1/n of the keys, spread evenly.</summary>
    public const int RingPoints = 64;

    /// <returns>The index of the chosen endpoint, or -1 when none is available.</returns>
    public static int Choose(LoadBalancerType type, IReadOnlyList<BackendEndpoint> endpoints, Func<BackendEndpoint, bool> available,
        ref int roundRobin, HashRing? ring, string? hashKey, Random random)
    {
        int count = endpoints.Count;
        if (count == 0)
        {
            return -1;
        }

        switch (type)
        {
            case LoadBalancerType.RoundRobin:
                for (int i = 0; i < count; i++)
                {
                    int index = (int)((uint)Interlocked.Increment(ref roundRobin) % (uint)count);
                    if (available(endpoints[index]))
                    {
                        return index;
                    }
                }

                return -1;

            case LoadBalancerType.LeastRequest:
            {
                // Ties broken at random, so equal endpoints share the load instead of the first taking it all.
                int best = -1, ties = 0;
                int offset = random.Next(count);
                for (int n = 0; n < count; n++)
                {
                    int i = (n + offset) % count;
                    if (!available(endpoints[i]))
                    {
                        continue;
                    }

                    if (best < 0 || endpoints[i].InFlight < endpoints[best].InFlight)
                    {
                        best = i;
                        ties = 1;
                    }
                    else if (endpoints[i].InFlight == endpoints[best].InFlight && random.Next(++ties) == 0)
                    {
                        best = i;
                    }
                }

                return best;
            }

            case LoadBalancerType.ConsistentHash when ring is not null && !string.IsNullOrEmpty(hashKey):
                return ring.Find(Hash(hashKey), i => available(endpoints[i]));

            default:
            {
                // Power of two choices; a request without a hash key under ConsistentHash is balanced the same way.
                int first = PickAvailable(endpoints, available, random, -1);
                if (first < 0)
                {
                    return -1;
                }

                int second = PickAvailable(endpoints, available, random, first);
                return second < 0 || endpoints[first].InFlight <= endpoints[second].InFlight ? first : second;
            }
        }
    }

    /// <summary>A stable 64-bit hash (the same on every node and every run, unlike string.GetHashCode).</summary>
    public static ulong Hash(string value)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(value), digest);
        return BinaryPrimitives.ReadUInt64BigEndian(digest);
    }

    private static int PickAvailable(IReadOnlyList<BackendEndpoint> endpoints, Func<BackendEndpoint, bool> available, Random random, int except)
    {
        // A few random draws first (the common case: most endpoints available), then a scan from a random start.
        for (int attempt = 0; attempt < 3; attempt++)
        {
            int i = random.Next(endpoints.Count);
            if (i != except && available(endpoints[i]))
            {
                return i;
            }
        }

        int start = random.Next(endpoints.Count);
        for (int n = 0; n < endpoints.Count; n++)
        {
            int i = (start + n) % endpoints.Count;
            if (i != except && available(endpoints[i]))
            {
                return i;
            }
        }

        return -1;
    }
}

/// <summary>A consistent-hash ring over a backend's endpoints, by their keys: built when the endpoints change.</summary>
internal sealed class HashRing
{
    private readonly ulong[] _points;
    private readonly int[] _owners;

    public HashRing(IReadOnlyList<string> keys)
    {
        var points = new List<(ulong Point, int Owner)>(keys.Count * EndpointChooser.RingPoints);
        for (int i = 0; i < keys.Count; i++)
        {
            for (int v = 0; v < EndpointChooser.RingPoints; v++)
            {
                points.Add((EndpointChooser.Hash($"{keys[i]}#{v}"), i));
            }
        }

        points.Sort((a, b) => a.Point.CompareTo(b.Point));
        _points = [.. points.Select(p => p.Point)];
        _owners = [.. points.Select(p => p.Owner)];
    }

    /// <summary>The owner of the first point at or after <paramref name="hash"/> that is available, walking the ring; -1 if none is.</summary>
    public int Find(ulong hash, Func<int, bool> available)
    {
        if (_points.Length == 0)
        {
            return -1;
        }

        int start = Array.BinarySearch(_points, hash);
        if (start < 0)
        {
            start = ~start;
        }

        for (int n = 0; n < _points.Length; n++)
        {
            int owner = _owners[(start + n) % _points.Length];
            if (available(owner))
            {
                return owner;
            }
        }

        return -1;
    }
}
