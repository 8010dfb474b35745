using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using NodeMesh.App;

namespace NodeMesh.Cli;

/// <summary>How a listing is printed: <c>-o table|wide|json|yaml</c> (<c>--json</c> is <c>-o json</c>).</summary>
internal enum OutputFormat
{
    Table,
    Wide,
    Json,
    Yaml,
}

internal static class Output
{
    public static OutputFormat Format(Options options)
    {
        string? named = options.Get("output");
        if (options.Flag("json") && named is not null and not "json")
        {
            throw new UsageException($"--json and -o {named} disagree; give one of them");
        }

        return (options.Flag("json") ? "json" : named) switch
        {
            null or "table" => OutputFormat.Table,
            "wide" => OutputFormat.Wide,
            "json" => OutputFormat.Json,
            "yaml" => OutputFormat.Yaml,
            // Options.Parse checks the choices; this is for a caller that did not.
            string other => throw new UsageException($"--output: '{Contracts.Printable.Of(other)}' is not one of {string.Join(", ", CommandTable.OutputFormats)}"),
        };
    }

    /// <summary>
    /// The API's contract for people: indented, and only what JSON requires escaped ("+" and non-ASCII as they are,
    /// not \u002B); the socket's replies stay compact.
    /// </summary>
    internal static readonly Contracts.ApiJsonContext Readable = new(new JsonSerializerOptions(Contracts.ApiJsonContext.Default.Options)
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>The value as JSON (indented) or YAML; null for the table formats, which each command draws itself.</summary>
    public static string? Serialized<T>(T value, JsonTypeInfo<T> type, OutputFormat format) => format switch
    {
        OutputFormat.Json => JsonSerializer.Serialize(value, (JsonTypeInfo<T>)Readable.GetTypeInfo(typeof(T))!) + "\n",
        OutputFormat.Yaml => YamlWriter.FromJson(JsonSerializer.Serialize(value, type)),
        _ => null,
    };

    public static bool IsWide(OutputFormat format) => format == OutputFormat.Wide;
}
