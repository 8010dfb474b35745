using System.Net;
using CsCheck;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// The flow header parser against any bytes: it never throws, reads back exactly what <see cref="FlowHeader.Write"/>
/// produced, refuses every truncation or extension of a valid header, and agrees with its own length prefix check.
/// </summary>
public sealed class FlowHeaderFuzzTests
{
    private static readonly Gen<string?> TraceParent = Gen.OneOf(
        Gen.Const((string?)null),
        Gen.Select(Gen.Byte.Array[16], Gen.Byte.Array[8], Gen.Byte, (trace, span, flags) =>
            (string?)$"00-{Convert.ToHexStringLower(trace)}-{Convert.ToHexStringLower(span)}-{flags:x2}"));

    private static readonly Gen<FlowHeader> Header =
        Gen.Select(Gen.UInt, Gen.Int[1, 65535], Gen.UInt, Gen.Int[0, 65535], TraceParent, (dst, dport, src, sport, trace) =>
            new FlowHeader(new IPEndPoint(new IPAddress(dst), dport), new IPEndPoint(new IPAddress(src), sport), trace));

    private static byte[] Bytes(FlowHeader header)
    {
        byte[] bytes = new byte[header.Length];
        Assert.Equal(header.Length, header.Write(bytes));
        return bytes;
    }

    [Fact]
    public void WhatWriteProduces_ParsesBackToTheSameHeader()
    {
        Header.Sample(header =>
        {
            byte[] bytes = Bytes(header);
            Assert.True(FlowHeader.TryParse(bytes, out FlowHeader parsed, out string? error), error);
            Assert.Equal(header, parsed);
            Assert.True(FlowHeader.TryGetLength(bytes, out int length, out _));
            Assert.Equal(bytes.Length, length);
        }, iter: FuzzBudget.Iterations(5_000), seed: FuzzBudget.Seed);
    }

    [Fact]
    public void EveryTruncationAndExtension_OfAValidHeader_IsRefusedWithAReason()
    {
        Gen.Select(Header, Gen.Byte.Array[1, 8]).Sample((header, extra) =>
        {
            byte[] bytes = Bytes(header);
            for (int cut = 0; cut < bytes.Length; cut++)
            {
                Assert.False(FlowHeader.TryParse(bytes.AsSpan(0, cut), out _, out string? error), $"{cut} of {bytes.Length} bytes accepted");
                Assert.False(string.IsNullOrWhiteSpace(error));
            }

            Assert.False(FlowHeader.TryParse([.. bytes, .. extra], out _, out string? longer));
            Assert.False(string.IsNullOrWhiteSpace(longer));
        }, iter: FuzzBudget.Iterations(1_000), seed: FuzzBudget.Seed);
    }

    [Fact]
    public void AnyBytes_AreParsedOrRefused_NeverThrow_AndWhatParsesWritesBackTheSameBytes()
    {
        Gen<byte[]> inputs = Gen.OneOf(
            Gen.Byte.Array[0, FlowHeader.MaxLength + 4],
            ByteMutations.Of(Corpus.FlowHeaders, maxMutations: 3),
            Header.Select(Bytes).SelectMany(b => Gen.Int[0, b.Length - 1].SelectMany(i => Gen.Byte.Select(v => { byte[] c = [.. b]; c[i] = v; return c; }))));
        inputs.Sample(AssertParsedOrRefused, iter: FuzzBudget.Iterations(20_000), seed: FuzzBudget.Seed, print: Convert.ToHexString);
    }

    public static TheoryData<string> FlowHeaderCorpus => Corpus.Names("flowheader");

    [Theory]
    [MemberData(nameof(FlowHeaderCorpus))]
    public void Corpus_EachFile_IsParsedOrRefused(string name) => AssertParsedOrRefused(Corpus.Read("flowheader", name));

    [Fact]
    public void Corpus_HoldsBothAcceptedAndRefusedHeaders()
    {
        // The seeds must reach both outcomes, or the mutating property only ever starts on one side.
        Assert.Contains(Corpus.FlowHeaders, c => FlowHeader.TryParse(c.Bytes, out _, out _));
        Assert.Contains(Corpus.FlowHeaders, c => !FlowHeader.TryParse(c.Bytes, out _, out _));
    }

    private static void AssertParsedOrRefused(byte[] bytes)
    {
        if (FlowHeader.TryParse(bytes, out FlowHeader header, out string? error))
        {
            Assert.Null(error);
            Assert.Equal(bytes, Bytes(header));
            Assert.True(FlowHeader.TryGetLength(bytes, out int length, out _));
            Assert.Equal(bytes.Length, length);
        }
        else
        {
            Assert.False(string.IsNullOrWhiteSpace(error));
        }
    }
}
