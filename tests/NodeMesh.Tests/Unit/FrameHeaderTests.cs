using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Unit;

public class FrameHeaderTests
{
    [Fact]
    public void RoundTrip()
    {
        byte[] bytes = new byte[FrameHeader.Size];
        new FrameHeader(FrameType.Data, 7, 65536).Write(bytes);
        Assert.True(FrameHeader.TryRead(bytes, out FrameHeader header, out string? error), error);
        Assert.Equal(new FrameHeader(FrameType.Data, 7, 65536), header);
    }

    [Theory]
    [InlineData(new byte[] { 9, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 }, "unknown frame type 9")]
    [InlineData(new byte[] { 2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0 }, "reserved")]
    [InlineData(new byte[] { 2, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1 }, "outside 0..65536")]
    [InlineData(new byte[] { 2, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff }, "outside")]
    [InlineData(new byte[] { 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5 }, "Window frame must carry 4 bytes")]
    [InlineData(new byte[] { 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1 }, "Fin frame must carry 0 bytes")]
    [InlineData(new byte[] { 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0x49 }, "longer than a flow header")] // 329: one byte over FlowHeader.MaxLength
    [InlineData(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, "on stream 0")]
    public void TryRead_RefusesMalformedHeaders(byte[] bytes, string expected)
    {
        Assert.False(FrameHeader.TryRead(bytes, out _, out string? error));
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryRead_NeverThrows_OnRandomInput()
    {
        var random = new Random(42);
        byte[] bytes = new byte[FrameHeader.Size];
        for (int i = 0; i < 50_000; i++)
        {
            random.NextBytes(bytes);
            bytes[0] = (byte)random.Next(0, 9);
            _ = FrameHeader.TryRead(bytes, out _, out _);
        }
    }
}
