using NodeMesh.App;

namespace NodeMesh.Tests.Unit;

/// <summary>The watchdog environment is read as sd_watchdog_enabled(3) reads it; pings go at half the interval.</summary>
public sealed class SystemdWatchdogTests
{
    [Theory]
    [InlineData("30000000", null, 15000.0)]
    [InlineData("30000000", "", 15000.0)]
    [InlineData("30000000", "4242", 15000.0)]
    [InlineData("1000000", null, 500.0)]
    [InlineData("1", null, 1.0)] // clamped: no busy loop
    [InlineData("18446744073709551615", null, 86400000.0)] // clamped to a day
    public void PingInterval_IsHalfTheWatchdog_ForThisProcess(string usec, string? pid, double expectedMs) =>
        Assert.Equal(expectedMs, SystemdWatchdog.PingInterval(usec, pid, ownPid: 4242)!.Value.TotalMilliseconds);

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("0", null)]
    [InlineData("-5", null)]
    [InlineData("30s", null)]
    [InlineData(" 30000000", null)]
    [InlineData("30000000", "1")]
    [InlineData("30000000", "not-a-pid")]
    public void PingInterval_IsNone_WithoutAWatchdogForThisProcess(string? usec, string? pid) =>
        Assert.Null(SystemdWatchdog.PingInterval(usec, pid, ownPid: 4242));

    [Theory]
    [InlineData(0, "serving 0 workloads")]
    [InlineData(1, "serving 1 workload")]
    [InlineData(7, "serving 7 workloads")]
    public void Status_NamesTheWorkloadsServed(int workloads, string expected) =>
        Assert.Equal(expected, SystemdWatchdog.Status(workloads));
}
