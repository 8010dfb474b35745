using System.Buffers.Binary;
using System.Net;
using System.Text;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>
/// The far end of a tunnel connection, speaking the frame protocol by hand: what a buggy or hostile peer can
/// send, and what the agent's side answers.
/// </summary>
internal sealed class RawTunnelPeer(Stream stream) : IAsyncDisposable
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);

    public Stream Stream { get; } = stream;

    public static FlowHeader Header(int port) => new(IPEndPoint.Parse($"10.0.0.2:{port}"), IPEndPoint.Parse("10.0.0.1:1000"), null);

    public async Task SendAsync(byte type, uint streamId, ReadOnlyMemory<byte> payload, byte flags = 0)
    {
        byte[] frame = new byte[FrameHeader.Size + payload.Length];
        frame[0] = type;
        frame[1] = flags;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), streamId);
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(8), payload.Length);
        payload.CopyTo(frame.AsMemory(FrameHeader.Size));
        await _writeLock.WaitAsync();
        try
        {
            await Stream.WriteAsync(frame);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public Task SendAsync(FrameType type, uint streamId, ReadOnlyMemory<byte> payload) => SendAsync((byte)type, streamId, payload);

    public Task OpenAsync(uint streamId, int port = 80)
    {
        FlowHeader header = Header(port);
        byte[] bytes = new byte[header.Length];
        header.Write(bytes);
        return SendAsync(FrameType.Open, streamId, bytes);
    }

    public Task SendU32Async(FrameType type, uint streamId, uint value)
    {
        byte[] payload = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, value);
        return SendAsync(type, streamId, payload);
    }

    public Task PingAsync() => SendAsync(FrameType.Ping, 0, new byte[8]);

    /// <summary>The next frame the agent's side sent, or null at the end of the stream.</summary>
    public async Task<RawFrame?> ReadAsync()
    {
        byte[] header = new byte[FrameHeader.Size];
        try
        {
            await Stream.ReadExactlyAsync(header);
        }
        catch (EndOfStreamException)
        {
            return null;
        }

        int length = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(8));
        byte[] payload = new byte[length];
        await Stream.ReadExactlyAsync(payload);
        return new RawFrame((FrameType)header[0], BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)), payload);
    }

    /// <summary>Reads until the agent's GOAWAY (skipping other frames) or the end of the stream.</summary>
    public async Task<RawFrame?> ReadUntilGoAwayAsync()
    {
        while (await ReadAsync() is RawFrame frame)
        {
            if (frame.Type == FrameType.GoAway)
            {
                return frame;
            }
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        await Stream.DisposeAsync();
        _writeLock.Dispose();
    }
}

internal sealed record RawFrame(FrameType Type, uint StreamId, byte[] Payload)
{
    public uint U32 => BinaryPrimitives.ReadUInt32BigEndian(Payload);

    public TunnelError GoAwayCode => (TunnelError)BinaryPrimitives.ReadUInt32BigEndian(Payload.AsSpan(4));

    public string GoAwayReason => Encoding.UTF8.GetString(Payload.AsSpan(8));
}
