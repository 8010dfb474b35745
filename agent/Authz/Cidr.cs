using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace NodeMesh.Authz;

/// <summary>An IPv4 address block (<c>10.0.0.0/8</c>, or a single address meaning /32).</summary>
internal readonly record struct Cidr(uint Network, int PrefixLength)
{
    private uint Mask => PrefixLength == 0 ? 0 : uint.MaxValue << (32 - PrefixLength);

    public bool Contains(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[4];
        address.TryWriteBytes(bytes, out _);
        return (BinaryPrimitives.ReadUInt32BigEndian(bytes) & Mask) == Network;
    }

    public static bool TryParse(string text, [NotNullWhen(true)] out Cidr? cidr, [NotNullWhen(false)] out string? error)
    {
        cidr = null;
        string[] parts = text.Split('/');
        if (parts.Length > 2 || !Config.ConfigLoader.IsIPv4(parts[0]))
        {
            error = $"'{Contracts.Printable.Of(text)}' is not an IPv4 address or block (a.b.c.d or a.b.c.d/n)";
            return false;
        }

        int prefix = 32;
        if (parts.Length == 2 && (!int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > 32 || parts[1].Length > 2))
        {
            error = $"'{Contracts.Printable.Of(text)}': prefix length must be 0-32";
            return false;
        }

        Span<byte> bytes = stackalloc byte[4];
        IPAddress.Parse(parts[0]).TryWriteBytes(bytes, out _);
        uint network = BinaryPrimitives.ReadUInt32BigEndian(bytes);
        var value = new Cidr(network, prefix);
        if ((network & value.Mask) != network)
        {
            Span<byte> masked = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(masked, network & value.Mask);
            error = $"'{text}' has host bits set; did you mean {new IPAddress(masked)}/{prefix}?";
            return false;
        }

        cidr = value;
        error = null;
        return true;
    }
}
