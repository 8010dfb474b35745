using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace NodeMesh.Tunnel;

/// <summary>
/// The first bytes of every flow on a tunnel: where the client meant to go, who it really is, the W3C trace
/// context, and for a request that entered at a gateway the caller it authenticated. Wire format, version 1
/// (big-endian):
/// <code>
/// 0  'N' 'M'        magic
/// 2  version = 1
/// 3  flags          bit 0: a request principal follows; other bits reserved (refused)
/// 4  destination IPv4 (4) + port (2)
/// 10 source IPv4 (4) + port (2)
/// 16 traceparent length L (0 or 55)
/// 17 traceparent, L ASCII bytes: 00-&lt;32 hex&gt;-&lt;16 hex&gt;-&lt;2 hex&gt;
/// 17+L (flag 0 only) principal length P (1-255), then P bytes of UTF-8 without control characters
/// </code>
/// An agent that predates the principal refuses a flow that carries one (unknown flags), never ignores it.
/// </summary>
internal readonly record struct FlowHeader(IPEndPoint Destination, IPEndPoint Source, string? TraceParent, string? Principal = null)
{
    public const byte Version = 1;
    public const int FixedLength = 17;
    public const int TraceParentLength = 55;
    public const int MaxPrincipalBytes = 255;
    public const int MaxLength = FixedLength + TraceParentLength + 1 + MaxPrincipalBytes;
    private const byte PrincipalFlag = 0x01;

    public int Length => FixedLength + (TraceParent is null ? 0 : TraceParentLength) + (Principal is null ? 0 : 1 + System.Text.Encoding.UTF8.GetByteCount(Principal));

    /// <summary>Whether <paramref name="principal"/> fits a header: 1-255 bytes of UTF-8, no control characters.</summary>
    public static bool IsPrincipal(string principal) =>
        principal.Length > 0 && System.Text.Encoding.UTF8.GetByteCount(principal) <= MaxPrincipalBytes && !principal.Any(char.IsControl);

    public int Write(Span<byte> destination)
    {
        if (Destination.AddressFamily != AddressFamily.InterNetwork || Source.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new ArgumentException("flow header version 1 carries IPv4 endpoints only");
        }

        if (TraceParent is not null && !IsTraceParent(TraceParent))
        {
            throw new ArgumentException($"'{TraceParent}' is not a W3C traceparent");
        }

        if (Principal is not null && !IsPrincipal(Principal))
        {
            throw new ArgumentException("a request principal is 1-255 bytes of UTF-8 without control characters");
        }

        destination[0] = (byte)'N';
        destination[1] = (byte)'M';
        destination[2] = Version;
        destination[3] = Principal is null ? (byte)0 : PrincipalFlag;
        WriteEndPoint(destination[4..], Destination);
        WriteEndPoint(destination[10..], Source);
        destination[16] = (byte)(TraceParent is null ? 0 : TraceParentLength);
        if (TraceParent is not null)
        {
            for (int i = 0; i < TraceParentLength; i++)
            {
                destination[FixedLength + i] = (byte)TraceParent[i];
            }
        }

        if (Principal is not null)
        {
            int at = FixedLength + (TraceParent is null ? 0 : TraceParentLength);
            int written = System.Text.Encoding.UTF8.GetBytes(Principal, destination[(at + 1)..]);
            destination[at] = (byte)written;
        }

        return Length;
    }

    /// <summary>
    /// How many bytes the header starting at <paramref name="prefix"/> occupies: known from 17 bytes, or with a
    /// principal once its length byte is there too.
    /// </summary>
    public static bool TryGetLength(ReadOnlySpan<byte> prefix, out int length, [NotNullWhen(false)] out string? error)
    {
        length = 0;
        if (prefix.Length < FixedLength)
        {
            error = $"header truncated: {prefix.Length} of {FixedLength} bytes";
            return false;
        }

        if (prefix[0] != 'N' || prefix[1] != 'M')
        {
            error = $"bad magic 0x{prefix[0]:x2}{prefix[1]:x2}";
            return false;
        }

        if (prefix[2] != Version)
        {
            error = $"unsupported header version {prefix[2]} (this agent speaks {Version})";
            return false;
        }

        if ((prefix[3] & ~PrincipalFlag) != 0)
        {
            error = $"unknown flags 0x{prefix[3]:x2}";
            return false;
        }

        if (prefix[16] is not (0 or TraceParentLength))
        {
            error = $"traceparent length {prefix[16]} must be 0 or {TraceParentLength}";
            return false;
        }

        length = FixedLength + prefix[16];
        if ((prefix[3] & PrincipalFlag) != 0)
        {
            if (prefix.Length <= length)
            {
                error = "header truncated: the principal's length is missing";
                return false;
            }

            if (prefix[length] == 0)
            {
                error = "principal length 0 (a header without a principal clears the flag)";
                return false;
            }

            length += 1 + prefix[length];
        }

        error = null;
        return true;
    }

    public static bool TryParse(ReadOnlySpan<byte> data, out FlowHeader header, [NotNullWhen(false)] out string? error)
    {
        header = default;
        if (!TryGetLength(data, out int length, out error))
        {
            return false;
        }

        if (data.Length != length)
        {
            error = $"header is {data.Length} bytes, expected {length}";
            return false;
        }

        IPEndPoint destination = ReadEndPoint(data[4..]);
        IPEndPoint source = ReadEndPoint(data[10..]);
        if (destination.Port == 0)
        {
            error = "destination port is 0";
            return false;
        }

        string? traceParent = null;
        if (data[16] > 0)
        {
            traceParent = string.Create(TraceParentLength, data.Slice(FixedLength, TraceParentLength).ToArray(), static (span, bytes) =>
            {
                for (int i = 0; i < bytes.Length; i++)
                {
                    span[i] = (char)bytes[i];
                }
            });
            if (!IsTraceParent(traceParent))
            {
                error = "traceparent is not of the form 00-<32 hex>-<16 hex>-<2 hex>";
                return false;
            }
        }

        string? principal = null;
        if ((data[3] & PrincipalFlag) != 0)
        {
            int at = FixedLength + data[16];
            try
            {
                principal = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data.Slice(at + 1, data[at]));
            }
            catch (System.Text.DecoderFallbackException)
            {
                error = "principal is not UTF-8";
                return false;
            }

            if (!IsPrincipal(principal))
            {
                error = "principal holds control characters";
                return false;
            }
        }

        header = new FlowHeader(destination, source, traceParent, principal);
        return true;
    }

    internal static bool IsTraceParent(string value)
    {
        if (value.Length != TraceParentLength || value[2] != '-' || value[35] != '-' || value[52] != '-')
        {
            return false;
        }

        for (int i = 0; i < value.Length; i++)
        {
            if (i is 2 or 35 or 52)
            {
                continue;
            }

            if (!char.IsAsciiHexDigitLower(value[i]) && !char.IsAsciiDigit(value[i]))
            {
                return false;
            }
        }

        return true;
    }

    private static void WriteEndPoint(Span<byte> span, IPEndPoint endPoint)
    {
        endPoint.Address.TryWriteBytes(span[..4], out _);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)endPoint.Port);
    }

    private static IPEndPoint ReadEndPoint(ReadOnlySpan<byte> span) =>
        new(new IPAddress(span[..4]), BinaryPrimitives.ReadUInt16BigEndian(span[4..]));
}
