using System.Text.Json;
using System.Text.Json.Serialization;
using NodeMesh.Contracts;

namespace NodeMesh.Config;

/// <summary>Every <see cref="TimeSpan"/> in the configuration file is a duration string ("5s", "250ms", "1m30s").</summary>
internal sealed class DurationJsonConverter : JsonConverter<TimeSpan>
{
    public override TimeSpan Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            // A bare number would leave its unit to guesswork.
            throw new JsonException(reader.TokenType == JsonTokenType.Number
                ? "a duration needs a unit: write it as a string such as \"5s\", \"250ms\" or \"1m30s\""
                : $"expected a duration string such as \"5s\", found {reader.TokenType}");
        }

        return Duration.TryParse(reader.GetString(), out TimeSpan value, out string? error) ? value : throw new JsonException(error);
    }

    public override void Write(Utf8JsonWriter writer, TimeSpan value, JsonSerializerOptions options) => writer.WriteStringValue(Duration.Format(value));
}
