using NodeMesh.Contracts;

namespace NodeMesh.Tests.Unit;

public sealed class DurationTests
{
    [Theory]
    [InlineData("5s", 5_000)]
    [InlineData("250ms", 250)]
    [InlineData("1m30s", 90_000)]
    [InlineData("1.5h", 5_400_000)]
    [InlineData("2d", 172_800_000)]
    [InlineData("0s", 0)]
    [InlineData("00:00:05", 5_000)]
    [InlineData("1h1m1s1ms", 3_661_001)]
    public void TryParse_ReadsUnitsAndSums(string text, long milliseconds)
    {
        Assert.True(Duration.TryParse(text, out TimeSpan value, out string? error), error);
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("5")]
    [InlineData("s")]
    [InlineData("5 s")]
    [InlineData("5sec")]
    [InlineData("-5s")]
    [InlineData("5S")]
    [InlineData("1.2.3s")]
    [InlineData("-00:00:05")]
    [InlineData("99999999999d")]
    [InlineData("3651d")]
    [InlineData("5s; rm -rf /")]
    public void TryParse_RefusesWhatIsNotADuration_WithAReason(string text)
    {
        Assert.False(Duration.TryParse(text, out _, out string? error));
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Theory]
    [InlineData(5_000, "5s")]
    [InlineData(90_000, "1m30s")]
    [InlineData(250, "250ms")]
    [InlineData(86_400_000, "1d")]
    [InlineData(0, "0s")]
    [InlineData(1_500, "1s500ms")]
    public void Format_IsShort_AndReadsBack(long milliseconds, string expected)
    {
        TimeSpan value = TimeSpan.FromMilliseconds(milliseconds);
        Assert.Equal(expected, Duration.Format(value));
        Assert.True(Duration.TryParse(Duration.Format(value), out TimeSpan back, out _));
        Assert.Equal(value, back);
    }
}
