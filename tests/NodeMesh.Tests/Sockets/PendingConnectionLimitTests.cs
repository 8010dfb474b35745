using System.Net;
using NodeMesh.Sockets;

namespace NodeMesh.Tests.Sockets;

public class PendingConnectionLimitTests
{
    private static readonly IPAddress A = IPAddress.Parse("10.0.0.1");
    private static readonly IPAddress B = IPAddress.Parse("10.0.0.2");

    [Fact]
    public void OneAddress_IsHeldToItsShare_OthersStillGetIn()
    {
        var limit = new PendingConnectionLimit(total: 10, perAddress: 3);
        for (int i = 0; i < 3; i++)
        {
            Assert.True(limit.TryEnter(A, out _));
        }

        Assert.False(limit.TryEnter(A, out string? refusal));
        Assert.Equal(PendingConnectionLimit.AddressLimit, refusal);
        Assert.True(limit.TryEnter(B, out _));
        Assert.Equal(4, limit.Count);
    }

    [Fact]
    public void TheTotal_BoundsAllAddresses_AndSlotsComeBackOnExit()
    {
        var limit = new PendingConnectionLimit(total: 4, perAddress: 3);
        Assert.True(limit.TryEnter(A, out _));
        Assert.True(limit.TryEnter(A, out _));
        Assert.True(limit.TryEnter(B, out _));
        Assert.True(limit.TryEnter(B, out _));
        Assert.False(limit.TryEnter(IPAddress.Parse("10.0.0.3"), out string? refusal));
        Assert.Equal(PendingConnectionLimit.TotalLimit, refusal);

        limit.Exit(A);
        Assert.True(limit.TryEnter(IPAddress.Parse("10.0.0.3"), out _));
        limit.Exit(A);
        limit.Exit(B);
        limit.Exit(B);
        Assert.Equal(1, limit.Count);
        Assert.Throws<InvalidOperationException>(() => limit.Exit(A));
    }

    [Fact]
    public void MappedIPv4_CountsAsTheSameAddress()
    {
        var limit = new PendingConnectionLimit(total: 10, perAddress: 1);
        Assert.True(limit.TryEnter(A, out _));
        Assert.False(limit.TryEnter(A.MapToIPv6(), out _));
        limit.Exit(A.MapToIPv6());
        Assert.Equal(0, limit.Count);
    }

    [Fact]
    public void AcceptBackoff_StartsAt10ms_DoublesTo1s()
    {
        TimeSpan backoff = TimeSpan.Zero;
        var seen = new List<double>();
        for (int i = 0; i < 10; i++)
        {
            backoff = AcceptLoop.NextBackoff(backoff);
            seen.Add(backoff.TotalMilliseconds);
        }

        Assert.Equal([10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000], seen);
    }
}
