using System.Text;
using System.Text.Json;

namespace NodeMesh.Cli;

/// <summary>
/// YAML for <c>-o yaml</c>, written from the JSON the same command prints for <c>-o json</c>: the same data by
/// construction, and no YAML library (YamlDotNet needs its static generator to be AOT-safe, a heavy dependency
/// for a few plain records). Block style; strings are quoted (JSON escapes are valid YAML) unless plainly safe.
/// </summary>
internal static class YamlWriter
{
    public static string FromJson(string json)
    {
        using JsonDocument document = JsonDocument.Parse(json);
        var text = new StringBuilder();
        Write(text, document.RootElement, 0);
        return text.ToString();
    }

    /// <summary>The items of a JSON array as YAML sequence items, for output that grows (<c>flows --follow</c>).</summary>
    public static string SequenceItems(string jsonArray)
    {
        using JsonDocument document = JsonDocument.Parse(jsonArray);
        var text = new StringBuilder();
        if (document.RootElement.GetArrayLength() > 0)
        {
            Write(text, document.RootElement, 0);
        }

        return text.ToString();
    }

    private static void Write(StringBuilder text, JsonElement element, int indent)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object when element.EnumerateObject().Any():
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    text.Append(' ', indent).Append(Scalar(property.Name)).Append(':');
                    WriteNested(text, property.Value, indent);
                }

                break;
            case JsonValueKind.Array when element.GetArrayLength() > 0:
                foreach (JsonElement item in element.EnumerateArray())
                {
                    text.Append(' ', indent).Append('-');
                    if (IsBlock(item))
                    {
                        // The item's first line goes after the dash: "- key: value", the rest below it.
                        var inner = new StringBuilder();
                        Write(inner, item, indent + 2);
                        text.Append(' ').Append(inner.ToString(indent + 2, inner.Length - indent - 2));
                    }
                    else
                    {
                        text.Append(' ').Append(Inline(item)).Append('\n');
                    }
                }

                break;
            default:
                text.Append(' ', indent).Append(Inline(element)).Append('\n');
                break;
        }
    }

    private static void WriteNested(StringBuilder text, JsonElement value, int indent)
    {
        if (IsBlock(value))
        {
            text.Append('\n');
            Write(text, value, indent + 2);
        }
        else
        {
            text.Append(' ').Append(Inline(value)).Append('\n');
        }
    }

    private static bool IsBlock(JsonElement e) =>
        (e.ValueKind == JsonValueKind.Object && e.EnumerateObject().Any()) || (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0);

    private static string Inline(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "{}",
        JsonValueKind.Array => "[]",
        JsonValueKind.String => Scalar(e.GetString()!),
        JsonValueKind.Null => "null",
        _ => e.GetRawText(),
    };

    private static readonly string[] Reserved = ["true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"];

    /// <summary>A string plain when YAML reads it back as the same string, double-quoted otherwise.</summary>
    internal static string Scalar(string value)
    {
        bool plain = value.Length > 0 && (char.IsAsciiLetter(value[0]) || value[0] == '/')
            && value[^1] != ':' && !Reserved.Contains(value.ToLowerInvariant())
            && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '/' or ':' or '@' or '+' or '-');
        return plain ? value : JsonSerializer.Serialize(value, Output.Readable.String);
    }
}
