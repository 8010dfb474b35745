using NodeMesh.Contracts;
using NodeMesh.Telemetry;

namespace NodeMesh.Tests.Unit;

/// <summary>The flow log numbers its records so that <c>flows --follow</c> asks only for what is new.</summary>
public class FlowLogCursorTests
{
    private static FlowRecord Flow(int n) => new() { Direction = "outbound", Path = "local", Source = $"10.0.0.1:{n}", Destination = "10.0.0.2:80", Result = "ok" };

    [Fact]
    public void Records_AreNumberedFromOne_AndSinceReturnsOnlyLaterOnes()
    {
        var log = new FlowLog(capacity: 8);
        Assert.Equal(0, log.Latest);
        for (int i = 1; i <= 5; i++)
        {
            log.Add(Flow(i));
        }

        Assert.Equal(5, log.Latest);
        Assert.Equal([1L, 2L, 3L, 4L, 5L], log.Snapshot().Select(f => f.Sequence));
        Assert.Equal([4L, 5L], log.Snapshot(since: 3).Select(f => f.Sequence));
        Assert.Equal("10.0.0.1:4", log.Snapshot(since: 3)[0].Source);
        Assert.Empty(log.Snapshot(since: 5));
    }

    [Fact]
    public void AfterWrapping_OnlyTheRecordsStillHeldAreReturned_WithTheirOwnNumbers()
    {
        var log = new FlowLog(capacity: 4);
        for (int i = 1; i <= 10; i++)
        {
            log.Add(Flow(i));
        }

        Assert.Equal([7L, 8L, 9L, 10L], log.Snapshot(since: 2).Select(f => f.Sequence));
        Assert.Equal(["10.0.0.1:9", "10.0.0.1:10"], log.Snapshot(since: 8).Select(f => f.Source));
    }
}
