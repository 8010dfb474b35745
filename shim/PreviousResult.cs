using System.Net;
using System.Text;
using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.Shim;

/// <summary>
/// The result of the plug-in before this one in the chain: a chained plug-in that changes no interface returns it
/// as it came, in the configuration's cniVersion, and reads the pod's addresses from it.
/// </summary>
internal static class PreviousResult
{
    /// <summary>The pod's addresses (<c>ips[].address</c>, CIDR notation), without their prefix length.</summary>
    public static List<string> Addresses(JsonElement result)
    {
        var addresses = new List<string>();
        if (!result.TryGetProperty("ips", out JsonElement ips))
        {
            return addresses;
        }

        if (ips.ValueKind != JsonValueKind.Array)
        {
            throw Undecodable("prevResult.ips must be an array");
        }

        int i = 0;
        foreach (JsonElement ip in ips.EnumerateArray())
        {
            string? cidr = ip.ValueKind == JsonValueKind.Object && ip.TryGetProperty("address", out JsonElement a) && a.ValueKind == JsonValueKind.String ? a.GetString() : null;
            if (cidr is null || !IsInterfaceAddress(cidr))
            {
                throw Undecodable($"prevResult.ips[{i}].address: '{Printable.Of(cidr ?? "missing")}' is not an address in CIDR notation");
            }

            addresses.Add(cidr[..cidr.IndexOf('/', StringComparison.Ordinal)]);
            i++;
        }

        return addresses;
    }

    /// <summary>The result to print: the previous one with the configuration's cniVersion.</summary>
    public static string Render(JsonElement result, string cniVersion)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("cniVersion", cniVersion);
            foreach (JsonProperty property in result.EnumerateObject())
            {
                if (property.NameEquals("cniVersion"))
                {
                    continue;
                }

                property.WriteTo(json);
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>An address with its prefix length, such as 10.1.2.3/24 (host bits set, so not an IPNetwork).</summary>
    private static bool IsInterfaceAddress(string cidr)
    {
        int slash = cidr.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 && IPAddress.TryParse(cidr.AsSpan(0, slash), out IPAddress? address)
            && int.TryParse(cidr.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int prefix)
            && prefix >= 0 && prefix <= (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
    }

    private static CniError Undecodable(string message) => new(CniError.DecodeFailure, "nodemesh-cni: " + message, "the previous plug-in's result (prevResult) is malformed");
}
