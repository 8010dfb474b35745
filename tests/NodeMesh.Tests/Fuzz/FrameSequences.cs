using System.Buffers.Binary;
using System.Net;
using CsCheck;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// Generators of whole frame sequences as a peer would put them on the wire: mostly well-formed frames on
/// streams that exist (so the read loop gets past framing into streams, credit and GOAWAY), with a share of
/// wrong ids, wrong lengths, bad flags, unknown types and garbage, and the end cut anywhere.
/// </summary>
internal static class FrameSequences
{
    /// <summary>One frame before ids are assigned: what kind, how to pick its stream, and how to break it.</summary>
    private readonly record struct FrameSpec(byte Type, int StreamChoice, uint RawStream, byte[] Payload, int Breakage, int BreakValue);

    private static readonly Gen<uint> U32Value = Gen.OneOf(
        Gen.Const(0u), Gen.Const(1u), Gen.Const((uint)int.MaxValue), Gen.Const(uint.MaxValue), Gen.Const(16_384u), Gen.UInt);

    private static readonly Gen<byte[]> U32Payload = U32Value.Select(v =>
    {
        byte[] b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    });

    private static readonly Gen<string?> TraceParent = Gen.OneOf(
        Gen.Const((string?)null),
        Gen.Select(Gen.Byte.Array[16], Gen.Byte.Array[8], (trace, span) =>
            (string?)$"00-{Convert.ToHexStringLower(trace)}-{Convert.ToHexStringLower(span)}-01"));

    private static readonly Gen<byte[]> ValidFlowHeader =
        Gen.Select(Gen.UInt, Gen.Int[1, 65535], Gen.UInt, Gen.Int[0, 65535], TraceParent, (dst, dport, src, sport, trace) =>
        {
            var header = new FlowHeader(new IPEndPoint(new IPAddress(dst), dport), new IPEndPoint(new IPAddress(src), sport), trace);
            byte[] bytes = new byte[header.Length];
            header.Write(bytes);
            return bytes;
        });

    private static readonly Gen<byte[]> OpenPayload = Gen.Frequency(
        (8, ValidFlowHeader),
        (1, Gen.Byte.Array[0, FlowHeader.MaxLength + 2]));

    // Mostly small: enough to exercise credit with a small connection window without making inputs heavy.
    private static readonly Gen<byte[]> DataPayload = Gen.Frequency(
        (6, Gen.Byte.Array[0, 64]),
        (3, Gen.Int[0, 8192].Select(n => new byte[n])),
        (1, Gen.Int[8192, 40_000].Select(n => new byte[n])));

    private static readonly Gen<byte[]> GoAwayPayload =
        Gen.Select(U32Payload, U32Payload, Gen.Frequency(
            (4, Gen.Byte.Array[0, 32]),
            (1, Gen.Int[0, FrameHeader.MaxGoAwayReason + 8].Select(n => new byte[n]))),
            (last, code, reason) => (byte[])[.. last, .. code, .. reason]);

    private static Gen<byte[]> PayloadFor(byte type) => type switch
    {
        (byte)FrameType.Open => OpenPayload,
        (byte)FrameType.Data => DataPayload,
        (byte)FrameType.Window or (byte)FrameType.Reset => U32Payload,
        (byte)FrameType.Ping or (byte)FrameType.Pong => Gen.Byte.Array[8],
        (byte)FrameType.Fin => Gen.Const(Array.Empty<byte>()),
        (byte)FrameType.GoAway => GoAwayPayload,
        _ => Gen.Byte.Array[0, 16],
    };

    private static readonly Gen<byte> Type = Gen.Frequency(
        (6, Gen.Const((byte)FrameType.Open)),
        (8, Gen.Const((byte)FrameType.Data)),
        (4, Gen.Const((byte)FrameType.Window)),
        (4, Gen.Const((byte)FrameType.Fin)),
        (3, Gen.Const((byte)FrameType.Reset)),
        (2, Gen.Const((byte)FrameType.Ping)),
        (1, Gen.Const((byte)FrameType.Pong)),
        (1, Gen.Const((byte)FrameType.GoAway)),
        (1, Gen.Byte));

    private static readonly Gen<FrameSpec> Frame =
        from type in Type
        from payload in PayloadFor(type)
        from spec in Gen.Select(Gen.Int[0, 99], Gen.UInt, Gen.Frequency((19, Gen.Const(0)), (1, Gen.Int[1, 4])), Gen.Int,
            (choice, raw, breakage, value) => new FrameSpec(type, choice, raw, payload, breakage, value))
        select spec;

    /// <summary>
    /// A frame sequence of up to <paramref name="maxFrames"/> frames, as bytes, its end sometimes cut. For a
    /// listener it mostly starts with an OPEN (frames on streams never opened end the connection at once); for a
    /// dialler (whose streams 1 and 3 are open) OPENs are rare, as the listener may send none.
    /// </summary>
    public static Gen<byte[]> Any(bool dialler, int maxFrames = 40) =>
        Gen.Select(Frame.Array[1, maxFrames], Gen.Int[0, 9], OpenFirst, Gen.Frequency((9, Gen.Const(-1)), (1, Gen.Int[0, int.MaxValue])),
            (frames, start, first, cut) =>
            {
                FrameSpec[] sequence = dialler
                    ? [.. frames.Select(f => f.Type == (byte)FrameType.Open && f.StreamChoice % 4 != 0 ? f with { Type = (byte)FrameType.Data } : f)]
                    : start < 8 ? [first, .. frames] : frames;
                byte[] bytes = Serialize(sequence, dialler ? [1, 3] : []);
                return cut < 0 || bytes.Length == 0 ? bytes : bytes[..(cut % bytes.Length)];
            });

    private static readonly Gen<FrameSpec> OpenFirst =
        ValidFlowHeader.Select(header => new FrameSpec((byte)FrameType.Open, 0, 0, header, 0, 0));

    /// <summary>Assigns stream ids the way a peer would (opens increasing, others on opened streams), then breaks some.</summary>
    private static byte[] Serialize(FrameSpec[] frames, uint[] alreadyOpen)
    {
        using var output = new MemoryStream();
        uint nextOpen = alreadyOpen.Length == 0 ? 1 : alreadyOpen.Max() + 2;
        var opened = new List<uint>(alreadyOpen);
        foreach (FrameSpec f in frames)
        {
            bool connectionFrame = f.Type is (byte)FrameType.Ping or (byte)FrameType.Pong or (byte)FrameType.GoAway;
            uint stream = f.StreamChoice switch
            {
                < 85 when connectionFrame => 0,
                < 85 when f.Type == (byte)FrameType.Open => nextOpen,
                < 85 when f.Type == (byte)FrameType.Window && f.StreamChoice < 20 => 0,
                < 85 when opened.Count > 0 => opened[f.StreamChoice % opened.Count],
                < 85 => 1,
                < 92 => (uint)(f.StreamChoice % 8),
                _ => f.RawStream,
            };
            if (f.Type == (byte)FrameType.Open)
            {
                opened.Add(stream);
                nextOpen = Math.Max(nextOpen, stream + 2);
            }

            byte[] header = new byte[FrameHeader.Size];
            header[0] = f.Type;
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(4), stream);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), f.Payload.Length);
            switch (f.Breakage)
            {
                case 1:
                    header[1 + (int)((uint)f.BreakValue % 3)] = (byte)(f.BreakValue | 1);
                    break;
                case 2:
                    BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), f.Payload.Length + (f.BreakValue % 5) - 2);
                    break;
                case 3:
                    BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), f.BreakValue);
                    break;
                case 4:
                    header[0] = (byte)f.BreakValue;
                    break;
            }

            output.Write(header);
            output.Write(f.Payload);
        }

        return output.ToArray();
    }
}
