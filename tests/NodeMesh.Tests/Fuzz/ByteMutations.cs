using CsCheck;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// AFL-style mutations of a seed input: flip, overwrite, insert, delete, duplicate, splice another seed,
/// truncate. Composed from CsCheck generators so a failure shrinks to few, small mutations.
/// </summary>
internal static class ByteMutations
{
    private enum Kind { Flip, Set, Insert, Delete, Duplicate, Splice, Truncate, Interesting }

    private readonly record struct Mutation(Kind Kind, int Position, int Length, byte Value, int Other);

    // Values that tend to sit on boundaries in length and counter fields.
    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x20, 0x40];

    private static readonly Gen<Mutation> OneMutation =
        Gen.Select(Gen.Enum<Kind>(), Gen.Int[0, int.MaxValue], Gen.Int[1, 64], Gen.Byte, Gen.Int[0, int.MaxValue],
            (kind, position, length, value, other) => new Mutation(kind, position, length, value, other));

    /// <summary>A seed from <paramref name="seeds"/> with 1 to <paramref name="maxMutations"/> mutations applied.</summary>
    public static Gen<byte[]> Of(IReadOnlyList<(string Name, byte[] Bytes)> seeds, int maxMutations = 8) =>
        Gen.Select(Gen.Int[0, seeds.Count - 1], OneMutation.Array[1, maxMutations],
            (seed, mutations) => Apply(seeds[seed].Bytes, mutations, seeds));

    private static byte[] Apply(byte[] seed, Mutation[] mutations, IReadOnlyList<(string Name, byte[] Bytes)> seeds)
    {
        var data = new List<byte>(seed);
        foreach (Mutation m in mutations)
        {
            int at = data.Count == 0 ? 0 : m.Position % data.Count;
            switch (m.Kind)
            {
                case Kind.Flip when data.Count > 0:
                    data[at] ^= (byte)(1 << (m.Value % 8));
                    break;
                case Kind.Set when data.Count > 0:
                    data[at] = m.Value;
                    break;
                case Kind.Interesting when data.Count > 0:
                    data[at] = InterestingBytes[m.Value % InterestingBytes.Length];
                    break;
                case Kind.Insert:
                    data.InsertRange(at, Enumerable.Repeat(m.Value, m.Length));
                    break;
                case Kind.Delete when data.Count > 0:
                    data.RemoveRange(at, Math.Min(m.Length, data.Count - at));
                    break;
                case Kind.Duplicate when data.Count > 0:
                    data.InsertRange(at, data.GetRange(at, Math.Min(m.Length, data.Count - at)));
                    break;
                case Kind.Splice:
                    byte[] other = seeds[m.Other % seeds.Count].Bytes;
                    if (other.Length > 0)
                    {
                        int from = m.Other % other.Length;
                        data.InsertRange(at, other.AsSpan(from, Math.Min(other.Length - from, m.Length * 16)).ToArray());
                    }

                    break;
                case Kind.Truncate:
                    data.RemoveRange(at, data.Count - at);
                    break;
            }
        }

        return [.. data];
    }
}
