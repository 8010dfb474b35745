using System.Net;
using System.Net.Sockets;

namespace NodeMesh.State;

/// <summary>
/// Which addresses may be a workload's. The agent binds transparently to a caller's address and routes by the
/// destination's, so an address that is not one host's unicast address (unspecified, loopback, multicast,
/// broadcast, link-local) would let a registration capture or impersonate traffic it has no claim to.
/// </summary>
internal static class WorkloadAddress
{
    /// <summary>Null if <paramref name="ip"/> may be a workload's address, else why not.</summary>
    public static string? Refusal(IPAddress ip)
    {
        if (ip.IsIPv4MappedToIPv6)
        {
            ip = ip.MapToIPv4();
        }

        if (ip.AddressFamily == AddressFamily.InterNetwork)
        {
            byte[] b = ip.GetAddressBytes();
            return b switch
            {
                [0, _, _, _] => "is unspecified (0.0.0.0/8)",
                [127, _, _, _] => "is a loopback address (127.0.0.0/8)",
                [169, 254, _, _] => "is a link-local address (169.254.0.0/16)",
                [>= 224 and <= 239, _, _, _] => "is a multicast address (224.0.0.0/4)",
                [255, 255, 255, 255] => "is the broadcast address",
                _ => null,
            };
        }

        return ip.Equals(IPAddress.IPv6Any) ? "is unspecified (::)"
            : IPAddress.IsLoopback(ip) ? "is the loopback address (::1)"
            : ip.IsIPv6Multicast ? "is a multicast address (ff00::/8)"
            : ip.IsIPv6LinkLocal ? "is a link-local address (fe80::/10)"
            : null;
    }
}
