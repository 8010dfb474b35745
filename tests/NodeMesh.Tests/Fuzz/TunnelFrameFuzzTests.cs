using CsCheck;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// The tunnel's frame parser and read loop against hostile input: the header parser alone over any 12 bytes,
/// and whole frame sequences (generated, mutated from the corpus, and the corpus itself) read by a listening
/// and a dialling <see cref="TunnelConnection"/>. See <see cref="TunnelFuzzTarget"/> for what must hold.
/// </summary>
public sealed class TunnelFrameFuzzTests
{
    [Fact]
    public void FrameHeader_AnyTwelveBytes_IsReadOrRefusedWithAReason_AndWhatIsReadWritesBackTheSame()
    {
        Gen.Byte.Array[FrameHeader.Size].Sample(bytes =>
        {
            if (FrameHeader.TryRead(bytes, out FrameHeader header, out string? error))
            {
                Assert.Null(error);
                byte[] written = new byte[FrameHeader.Size];
                header.Write(written);
                Assert.Equal(bytes, written);
                Assert.InRange(header.Length, 0, FrameHeader.MaxPayload);
            }
            else
            {
                Assert.False(string.IsNullOrWhiteSpace(error));
            }
        }, iter: FuzzBudget.Iterations(20_000), seed: FuzzBudget.Seed, print: Convert.ToHexString);
    }

    [Fact]
    public void FrameHeader_EveryTypeAndLength_OnStreamsZeroAndOne_AgreesWithTheSpecification()
    {
        // The table in PROTOCOL.md, checked exhaustively over type x stream x a few lengths.
        foreach (byte type in Enumerable.Range(0, 256).Select(t => (byte)t))
        {
            foreach (uint stream in new uint[] { 0, 1, 2, uint.MaxValue })
            {
                foreach (int length in new[] { 0, 4, 7, 8, 9, 17, 72, 73, 264, 265, FrameHeader.MaxPayload, FrameHeader.MaxPayload + 1, -1 })
                {
                    byte[] bytes = new byte[FrameHeader.Size];
                    bytes[0] = type;
                    System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), stream);
                    System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), length);
                    bool ok = FrameHeader.TryRead(bytes, out _, out string? error);
                    Assert.True(ok == Allowed((FrameType)type, stream, length), $"type {type} stream {stream} length {length}: {(ok ? "accepted" : error)}");
                }
            }
        }

        static bool Allowed(FrameType type, uint stream, int length)
        {
            bool lengthOk = type switch
            {
                FrameType.Open => length is >= 0 and <= FlowHeader.MaxLength,
                FrameType.Data => length is >= 0 and <= FrameHeader.MaxPayload,
                FrameType.Window or FrameType.Reset => length == 4,
                FrameType.Fin => length == 0,
                FrameType.Ping or FrameType.Pong => length == 8,
                FrameType.GoAway => length is >= 8 and <= 8 + FrameHeader.MaxGoAwayReason,
                _ => false,
            };
            bool streamOk = type switch
            {
                FrameType.Ping or FrameType.Pong or FrameType.GoAway => stream == 0,
                FrameType.Window => true,
                _ => stream != 0,
            };
            return lengthOk && streamOk;
        }
    }

    public static TheoryData<string> FrameCorpus => Corpus.Names("frames");

    [Theory]
    [MemberData(nameof(FrameCorpus))]
    public async Task Corpus_EachFile_EndsTheConnectionCleanly_OnBothSides(string name)
    {
        byte[] input = Corpus.Read("frames", name);
        foreach (bool dialler in new[] { false, true })
        {
            foreach (PeerExit exit in Enum.GetValues<PeerExit>())
            {
                await TunnelFuzzTarget.RunAsync(input, dialler, exit);
            }
        }
    }

    [Fact]
    public async Task GeneratedFrameSequences_ReadByAListener_NeverEscapeHangOrLeak()
    {
        await Gen.Select(FrameSequences.Any(dialler: false), Gen.Enum<PeerExit>())
            .SampleAsync((input, exit) => TunnelFuzzTarget.RunAsync(input, dialler: false, exit),
                iter: FuzzBudget.Iterations(150), seed: FuzzBudget.Seed, print: Describe);
    }

    [Fact]
    public async Task GeneratedFrameSequences_ReadByADialler_NeverEscapeHangOrLeak()
    {
        await Gen.Select(FrameSequences.Any(dialler: true), Gen.Enum<PeerExit>())
            .SampleAsync((input, exit) => TunnelFuzzTarget.RunAsync(input, dialler: true, exit),
                iter: FuzzBudget.Iterations(100), seed: FuzzBudget.Seed, print: Describe);
    }

    [Fact]
    public async Task MutatedCorpus_ReadByEitherSide_NeverEscapesHangsOrLeaks()
    {
        await Gen.Select(ByteMutations.Of(Corpus.Frames), Gen.Bool, Gen.Enum<PeerExit>())
            .SampleAsync((input, dialler, exit) => TunnelFuzzTarget.RunAsync(input, dialler, exit),
                iter: FuzzBudget.Iterations(200), seed: FuzzBudget.Seed, print: Describe);
    }

    private static string Describe((byte[] Input, PeerExit Exit) sample) => $"{sample.Exit} {Convert.ToHexString(sample.Input)}";

    private static string Describe((byte[] Input, bool Dialler, PeerExit Exit) sample) =>
        $"dialler={sample.Dialler} {sample.Exit} {Convert.ToHexString(sample.Input)}";
}
