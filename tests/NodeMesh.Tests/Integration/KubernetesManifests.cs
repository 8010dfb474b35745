using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using System.Text.RegularExpressions;
using k8s.Models;
using NodeMesh.Tests.Netns;
using YamlDotNet.RepresentationModel;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// Reads packaging/kubernetes strictly, into the official Kubernetes models (KubernetesClient's types and their
/// source-generated JSON metadata): a field a model does not have, a repeated field, a value of the wrong type or
/// a kind this reader does not know is an error naming it. KubernetesClient.Aot's own <c>KubernetesYaml</c> cannot
/// do this: it is internal in the AOT package and ignores its <c>strict</c> argument (it always skips unknown
/// fields), so each YAML document is turned into JSON here, read the way kubectl reads YAML (YAML 1.1 scalars:
/// <c>0400</c> is octal, <c>yes</c>/<c>no</c> are booleans), and deserialized with unknown members disallowed.
/// </summary>
internal static partial class KubernetesManifests
{
    public static string Directory => Path.Combine(TestPaths.RepoRoot, "packaging", "kubernetes");

    private static readonly Dictionary<(string ApiVersion, string Kind), Type> Kinds = new()
    {
        [("v1", "Namespace")] = typeof(V1Namespace),
        [("v1", "ServiceAccount")] = typeof(V1ServiceAccount),
        [("v1", "ConfigMap")] = typeof(V1ConfigMap),
        [("v1", "ResourceQuota")] = typeof(V1ResourceQuota),
        [("rbac.authorization.k8s.io/v1", "ClusterRole")] = typeof(V1ClusterRole),
        [("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")] = typeof(V1ClusterRoleBinding),
        [("apps/v1", "DaemonSet")] = typeof(V1DaemonSet),
        [("kustomize.config.k8s.io/v1beta1", "Kustomization")] = typeof(Kustomization),
    };

    private static readonly JsonSerializerOptions Strict = new()
    {
        TypeInfoResolver = JsonTypeInfoResolver.Combine(k8s.SourceGenerationContext.Default, new DefaultJsonTypeInfoResolver()),
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        AllowDuplicateProperties = false,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new IntOrStringJsonConverter(), new ResourceQuantityJsonConverter() },
    };

    /// <summary>kustomize's file: only the fields this directory uses (anything else is refused, as for the models).</summary>
    internal sealed record Kustomization(string ApiVersion, string Kind, IReadOnlyList<string> Resources);

    /// <summary>Every document of one file, each as its model; throws <see cref="ManifestException"/> naming the file and document.</summary>
    public static IReadOnlyList<object> Parse(string yaml, string source)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(yaml));
        }
        catch (Exception ex) when (ex is YamlDotNet.Core.YamlException or ArgumentException)
        {
            throw new ManifestException($"{source}: not YAML: {ex.Message}", ex);
        }

        var objects = new List<object>();
        for (int i = 0; i < stream.Documents.Count; i++)
        {
            string where = $"{source}, document {i + 1}";
            if (stream.Documents[i].RootNode is not YamlMappingNode root)
            {
                throw new ManifestException($"{where}: not a mapping");
            }

            string json = ToJson(root);
            JsonObject head = JsonNode.Parse(json)!.AsObject();
            string apiVersion = head["apiVersion"]?.GetValue<string>() ?? throw new ManifestException($"{where}: no apiVersion");
            string kind = head["kind"]?.GetValue<string>() ?? throw new ManifestException($"{where}: no kind");
            if (!Kinds.TryGetValue((apiVersion, kind), out Type? type))
            {
                throw new ManifestException($"{where}: unknown kind {apiVersion}/{kind}");
            }

            try
            {
                objects.Add(JsonSerializer.Deserialize(json, Strict.GetTypeInfo(type))
                    ?? throw new ManifestException($"{where}: empty"));
            }
            catch (JsonException ex)
            {
                throw new ManifestException($"{where} ({kind}): {ex.Message}", ex);
            }
        }

        return objects;
    }

    public static IReadOnlyList<object> ParseFile(string name) => Parse(File.ReadAllText(Path.Combine(Directory, name)), name);

    public static T Single<T>(string file) => Assert.Single(ParseFile(file).OfType<T>());

    private static string ToJson(YamlNode root)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true }))
        {
            Write(writer, root);
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void Write(Utf8JsonWriter writer, YamlNode node)
    {
        switch (node)
        {
            case YamlMappingNode mapping:
                writer.WriteStartObject();
                foreach ((YamlNode key, YamlNode value) in mapping.Children)
                {
                    writer.WritePropertyName(((YamlScalarNode)key).Value ?? "");
                    Write(writer, value);
                }

                writer.WriteEndObject();
                break;
            case YamlSequenceNode sequence:
                writer.WriteStartArray();
                foreach (YamlNode item in sequence.Children)
                {
                    Write(writer, item);
                }

                writer.WriteEndArray();
                break;
            case YamlScalarNode scalar:
                WriteScalar(writer, scalar);
                break;
            default:
                throw new ManifestException($"unexpected YAML node at {node.Start}");
        }
    }

    // Quoted and block scalars are strings; a plain scalar is resolved as YAML 1.1 resolves it (what kubectl's
    // YAML reader does): null, a boolean, an integer (0-prefixed: octal, 0x: hex), a float, else a string.
    private static void WriteScalar(Utf8JsonWriter writer, YamlScalarNode scalar)
    {
        string value = scalar.Value ?? "";
        if (scalar.Style != YamlDotNet.Core.ScalarStyle.Plain)
        {
            writer.WriteStringValue(value);
        }
        else if (value is "" or "~" or "null" or "Null" or "NULL")
        {
            writer.WriteNullValue();
        }
        else if (value is "true" or "True" or "TRUE" or "yes" or "Yes" or "YES" or "on" or "On" or "ON")
        {
            writer.WriteBooleanValue(true);
        }
        else if (value is "false" or "False" or "FALSE" or "no" or "No" or "NO" or "off" or "Off" or "OFF")
        {
            writer.WriteBooleanValue(false);
        }
        else if (OctalInteger().IsMatch(value))
        {
            writer.WriteNumberValue(Convert.ToInt64(value.TrimStart('+'), 8));
        }
        else if (value.StartsWith("0x", StringComparison.Ordinal) && long.TryParse(value[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long hex))
        {
            writer.WriteNumberValue(hex);
        }
        else if (DecimalInteger().IsMatch(value))
        {
            writer.WriteRawValue(value.TrimStart('+'));
        }
        else if (Float().IsMatch(value))
        {
            writer.WriteNumberValue(double.Parse(value, CultureInfo.InvariantCulture));
        }
        else
        {
            writer.WriteStringValue(value);
        }
    }

    [GeneratedRegex(@"^[-+]?0[0-7]+$")]
    private static partial Regex OctalInteger();

    [GeneratedRegex(@"^[-+]?(0|[1-9][0-9]*)$")]
    private static partial Regex DecimalInteger();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex Float();
}

internal sealed class ManifestException : Exception
{
    public ManifestException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
