using System.Buffers.Binary;

namespace NodeMesh.Tunnel;

/// <summary>Frame types of the tunnel's multiplexing protocol (see <see cref="FrameHeader"/>).</summary>
internal enum FrameType : byte
{
    /// <summary>Opens a stream; the payload is the <see cref="FlowHeader"/>. Sent by the dialling side only.</summary>
    Open = 1,

    /// <summary>Stream bytes, never more than the receiver has granted.</summary>
    Data = 2,

    /// <summary>Grants the sender more credit; payload: u32 increment.</summary>
    Window = 3,

    /// <summary>The sender will send no more data on the stream (half-close).</summary>
    Fin = 4,

    /// <summary>Aborts the stream in both directions; payload: u32 reason code.</summary>
    Reset = 5,

    /// <summary>Keepalive; payload: 8 opaque bytes echoed in a Pong.</summary>
    Ping = 6,

    Pong = 7,

    /// <summary>
    /// The sender opens or accepts no stream above the given id any more; streams up to it drain. Payload: u32 last
    /// stream id, u32 <see cref="TunnelError"/>, then up to <see cref="FrameHeader.MaxGoAwayReason"/> bytes of
    /// UTF-8 reason. Stream 0 only.
    /// </summary>
    GoAway = 8,
}

/// <summary>
/// The 12-byte header in front of every frame on a tunnel connection (big-endian):
/// <code>type (1) | flags (1, must be 0) | reserved (2, must be 0) | stream id (4) | payload length (4)</code>
/// A header that breaks these rules ends the connection: a peer that cannot frame cannot be trusted to count.
/// </summary>
internal readonly record struct FrameHeader(FrameType Type, uint StreamId, int Length)
{
    public const int Size = 12;

    /// <summary>The largest payload a frame may carry.</summary>
    public const int MaxPayload = 64 * 1024;

    /// <summary>The longest reason text a GOAWAY frame may carry.</summary>
    public const int MaxGoAwayReason = 256;

    public void Write(Span<byte> destination)
    {
        destination[0] = (byte)Type;
        destination[1] = 0;
        destination[2] = 0;
        destination[3] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], StreamId);
        BinaryPrimitives.WriteInt32BigEndian(destination[8..], Length);
    }

    public static bool TryRead(ReadOnlySpan<byte> source, out FrameHeader header, out string? error)
    {
        header = default;
        if (source.Length < Size)
        {
            error = $"frame header cut short at {source.Length} of {Size} bytes";
            return false;
        }

        var type = (FrameType)source[0];
        if (type is < FrameType.Open or > FrameType.GoAway)
        {
            error = $"unknown frame type {source[0]}";
            return false;
        }

        if (source[1] != 0 || source[2] != 0 || source[3] != 0)
        {
            error = "reserved frame header bits are set";
            return false;
        }

        uint stream = BinaryPrimitives.ReadUInt32BigEndian(source[4..]);
        int length = BinaryPrimitives.ReadInt32BigEndian(source[8..]);
        if (length < 0 || length > MaxPayload)
        {
            error = $"frame length {length} is outside 0..{MaxPayload}";
            return false;
        }

        int? expected = type switch
        {
            FrameType.Window or FrameType.Reset => 4,
            FrameType.Ping or FrameType.Pong => 8,
            FrameType.Fin => 0,
            _ => null,
        };
        if (expected is int fixedLength && length != fixedLength)
        {
            error = $"{type} frame must carry {fixedLength} bytes, not {length}";
            return false;
        }

        if (type == FrameType.Open && length > FlowHeader.MaxLength)
        {
            error = $"open frame of {length} bytes is longer than a flow header";
            return false;
        }

        if (type == FrameType.GoAway && length is < 8 or > 8 + MaxGoAwayReason)
        {
            error = $"GoAway frame of {length} bytes is outside 8..{8 + MaxGoAwayReason}";
            return false;
        }

        // Stream 0 is the connection itself: keepalive, GOAWAY, and the connection-level window.
        bool connectionFrame = type is FrameType.Ping or FrameType.Pong or FrameType.GoAway;
        if (stream == 0 && !connectionFrame && type != FrameType.Window)
        {
            error = $"{type} frame on stream 0";
            return false;
        }

        if (stream != 0 && connectionFrame)
        {
            error = $"{type} frame on stream {stream}; it belongs on stream 0";
            return false;
        }

        header = new FrameHeader(type, stream, length);
        error = null;
        return true;
    }
}
