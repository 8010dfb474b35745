namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// How long the fuzz properties run. The suite's run is short and fixed; NODEMESH_FUZZ_ITER multiplies every
/// iteration count for a long run (e.g. NODEMESH_FUZZ_ITER=1000), and NODEMESH_FUZZ_SEED replays one failure.
/// </summary>
internal static class FuzzBudget
{
    private static readonly int Factor = int.TryParse(Environment.GetEnvironmentVariable("NODEMESH_FUZZ_ITER"), out int f) && f > 0 ? f : 1;

    /// <summary>The seed a failing property printed, to reproduce it; null for a fresh random run.</summary>
    public static string? Seed { get; } = Environment.GetEnvironmentVariable("NODEMESH_FUZZ_SEED") is { Length: > 0 } s ? s : null;

    /// <summary>Iterations for a property whose suite run is <paramref name="inSuite"/>.</summary>
    public static long Iterations(int inSuite) => (long)inSuite * Factor;
}
