using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace NodeMesh.Config;

/// <summary>A CIDR as a string ("10.240.0.0/16"), parsed by <see cref="IPNetwork.TryParse(string, out IPNetwork)"/>; one written with host bits set is refused.</summary>
internal sealed class IPNetworkJsonConverter : JsonConverter<IPNetwork>
{
    public override IPNetwork Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        if (text is not null && IPNetwork.TryParse(text, out IPNetwork network))
        {
            // TryParse clears host bits; a range written with them is more likely a typo than meant.
            int slash = text.IndexOf('/', StringComparison.Ordinal);
            if (slash > 0 && IPAddress.TryParse(text.AsSpan(0, slash), out IPAddress? written) && !written.Equals(network.BaseAddress))
            {
                throw new JsonException($"'{Contracts.Printable.Of(text)}' is not a CIDR: it has host bits set (the range is {network})");
            }

            return network;
        }

        string given = text is null ? $"a {reader.TokenType.ToString().ToLowerInvariant()}" : $"'{Contracts.Printable.Of(text)}'";
        throw new JsonException($"{given} is not a CIDR such as 10.240.0.0/16 (address/prefix length, no host bits set)");
    }

    public override void Write(Utf8JsonWriter writer, IPNetwork value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
