using NodeMesh.App;

namespace NodeMesh.Tests.Unit;

/// <summary>Memory is reclaimed only after a large fall in open flows, never while the agent is busy or barely less so.</summary>
public sealed class MemoryReclaimerTests
{
    [Theory]
    [InlineData(5000, 0, true)]
    [InlineData(5000, 2500, true)]
    [InlineData(5000, 2501, false)]
    [InlineData(5000, 4500, false)]
    [InlineData(999, 0, false)]
    [InlineData(1000, 0, true)]
    [InlineData(1500, 600, false)]
    [InlineData(0, 0, false)]
    public void ShouldReclaim_OnlyAfterAFallOfAThousandFlowsToHalfThePeak(int peak, int open, bool expected) =>
        Assert.Equal(expected, MemoryReclaimer.ShouldReclaim(peak, open));
}
