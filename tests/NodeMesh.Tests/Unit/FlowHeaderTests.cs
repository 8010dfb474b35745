using System.Net;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Unit;

public class FlowHeaderTests
{
    private static readonly IPEndPoint Dst = IPEndPoint.Parse("10.240.2.2:8080");
    private static readonly IPEndPoint Src = IPEndPoint.Parse("10.240.1.2:40000");
    private const string Trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    [Theory]
    [InlineData(null)]
    [InlineData(Trace)]
    public void RoundTrip_PreservesEveryField(string? trace)
    {
        var header = new FlowHeader(Dst, Src, trace);
        byte[] bytes = new byte[FlowHeader.MaxLength];
        int length = header.Write(bytes);
        Assert.Equal(trace is null ? 17 : 72, length);
        Assert.True(FlowHeader.TryParse(bytes.AsSpan(0, length), out FlowHeader parsed, out string? error), error);
        Assert.Equal(Dst, parsed.Destination);
        Assert.Equal(Src, parsed.Source);
        Assert.Equal(trace, parsed.TraceParent);
    }

    [Fact]
    public void TryParse_RefusesBadMagicVersionFlagsAndLengths()
    {
        byte[] good = new byte[FlowHeader.MaxLength];
        int length = new FlowHeader(Dst, Src, null).Write(good);

        AssertRefused(Mutate(good, length, 0, (byte)'X'), "bad magic");
        AssertRefused(Mutate(good, length, 2, 2), "unsupported header version 2");
        AssertRefused(Mutate(good, length, 3, 2), "unknown flags");
        AssertRefused(Mutate(good, length, 3, 1), "the principal's length is missing");
        AssertRefused(Mutate(good, length, 16, 10), "traceparent length 10");
        AssertRefused(good.AsSpan(0, 10).ToArray(), "truncated");
        AssertRefused(good.AsSpan(0, length + 1).ToArray(), "expected 17");
    }

    [Theory]
    [InlineData(null, "consumer:shop-app")]
    [InlineData(Trace, "https://issuer.example.com//alice")]
    [InlineData(Trace, "ünïcode/sübject")]
    public void RoundTrip_CarriesTheRequestPrincipal(string? trace, string principal)
    {
        var header = new FlowHeader(Dst, Src, trace, principal);
        byte[] bytes = new byte[FlowHeader.MaxLength];
        int length = header.Write(bytes);
        Assert.Equal(header.Length, length);
        Assert.Equal(1, bytes[3]);
        Assert.True(FlowHeader.TryParse(bytes.AsSpan(0, length), out FlowHeader parsed, out string? error), error);
        Assert.Equal(header, parsed);
        Assert.True(FlowHeader.TryGetLength(bytes.AsSpan(0, length), out int known, out _) && known == length);
    }

    [Fact]
    public void TryParse_RefusesABadPrincipal()
    {
        byte[] bytes = new byte[FlowHeader.MaxLength];
        int length = new FlowHeader(Dst, Src, null, "consumer:ab").Write(bytes);
        AssertRefused(Mutate(bytes, length, 17, 0), "principal length 0");
        AssertRefused(Mutate(bytes, length, 17, 12), "expected 30");
        AssertRefused(Mutate(bytes, length, 20, 0x07), "control characters");
        AssertRefused(Mutate(bytes, length, 20, 0xff), "not UTF-8");
        Assert.Throws<ArgumentException>(() => new FlowHeader(Dst, Src, null, new string('a', 256)).Write(bytes));
        Assert.Throws<ArgumentException>(() => new FlowHeader(Dst, Src, null, "").Write(bytes));
        Assert.True(FlowHeader.IsPrincipal(new string('a', 255)));
    }

    [Fact]
    public void TryParse_RefusesZeroDestinationPort()
    {
        byte[] bytes = new byte[FlowHeader.MaxLength];
        int length = new FlowHeader(new IPEndPoint(Dst.Address, 1), Src, null).Write(bytes);
        bytes[9] = 0;
        AssertRefused(bytes.AsSpan(0, length).ToArray(), "destination port is 0");
    }

    [Fact]
    public void TryParse_RefusesTraceParentThatIsNotHex()
    {
        byte[] bytes = new byte[FlowHeader.MaxLength];
        int length = new FlowHeader(Dst, Src, Trace).Write(bytes);
        bytes[20] = (byte)'Z';
        AssertRefused(bytes.AsSpan(0, length).ToArray(), "traceparent is not");
    }

    [Fact]
    public void TryParse_NeverThrows_OnRandomInput()
    {
        var random = new Random(1234);
        for (int i = 0; i < 20_000; i++)
        {
            byte[] data = new byte[random.Next(0, 100)];
            random.NextBytes(data);
            if (data.Length > 2 && random.Next(2) == 0)
            {
                data[0] = (byte)'N';
                data[1] = (byte)'M';
                data[2] = 1;
            }

            _ = FlowHeader.TryParse(data, out _, out _);
        }
    }

    private static byte[] Mutate(byte[] source, int length, int index, byte value)
    {
        byte[] copy = source.AsSpan(0, length).ToArray();
        copy[index] = value;
        return copy;
    }

    private static void AssertRefused(byte[] data, string expected)
    {
        Assert.False(FlowHeader.TryParse(data, out _, out string? error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }
}
