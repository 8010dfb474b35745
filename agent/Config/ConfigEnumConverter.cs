using System.Text.Json;
using System.Text.Json.Serialization;

namespace NodeMesh.Config;

/// <summary>
/// An enum setting as a string: its name in any case, with '/', '-' and '_' ignored (so OTEL's
/// <c>http/protobuf</c> is <c>HttpProtobuf</c>); anything else is refused naming the values it may take.
/// </summary>
internal sealed class ConfigEnumConverter<T> : JsonConverter<T>
    where T : struct, Enum
{
    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        string? text = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
        string normalized = text?.Replace("/", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal) ?? "";
        if (normalized.Length > 0 && !char.IsAsciiDigit(normalized[0]) && Enum.TryParse(normalized, ignoreCase: true, out T value) && Enum.IsDefined(value))
        {
            return value;
        }

        string given = text is null ? $"a {reader.TokenType.ToString().ToLowerInvariant()}" : $"'{Contracts.Printable.Of(text)}'";
        throw new JsonException($"{given} is not one of {string.Join(", ", Enum.GetNames<T>())}");
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
