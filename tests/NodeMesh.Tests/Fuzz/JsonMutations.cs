using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;

namespace NodeMesh.Tests.Fuzz;

/// <summary>
/// Mutations of a JSON document that keep it mostly well formed, so the parser gets past syntax into types and
/// validation: a value replaced by an interesting one (wrong type, boundary number, near-valid string, deep
/// nesting, another node of the document), a member removed, an unknown member added, a member duplicated;
/// and, sometimes, byte mutations of the text on top.
/// </summary>
internal static class JsonMutations
{
    private enum Kind { Replace, Remove, AddUnknown, Duplicate, CopyNode }

    private readonly record struct Mutation(Kind Kind, int Target, int Value, int Other);

    private static readonly JsonDocumentOptions Lenient = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>Values that sit on the edge of what some field accepts, or of what a parser handles.</summary>
    private static readonly string[] Interesting =
    [
        "null", "true", "false", "0", "-1", "1", "65535", "65536", "2147483647", "2147483648", "-2147483649", "1e400", "0.5", "1e2",
        "\"\"", "\" \"", "\"x\"", "\"\\u0000\"", "\"\\ud800\"", "\"é\"", "\"STRICT\"", "\"strict\"", "\"PERMISSIVE\"", "\"ALLOW\"", "\"DENY\"",
        "\"*\"", "\"none\"", "\"server\"", "\"embedded\"", "\"ca\"", "\"files\"",
        "\"24h\"", "\"0s\"", "\"5s\"", "\"90d\"", "\"91d\"", "\"99999999999d\"", "\"99999999999h\"", "\"99999999999m\"", "\"99999999999s\"",
        "\"9223372036854775807s\"", "\"1x\"", "\"h\"", "\"-1h\"",
        "\"10.0.0.1\"", "\"10.0.0.256\"", "\"010.0.0.1\"", "\"::1\"", "\"0.0.0.0\"", "\"10.0.0.1:15012\"", "\"10.0.0.1:0\"", "\"10.0.0.1:65536\"",
        "\"10.0.0.0/8\"", "\"10.0.0.1/24\"", "\"10.0.0.0/33\"", "\"10.0.0.0/-1\"", "\"10.0.0.0/\"", "\"/\"", "\"10.0.0.0/8/8\"",
        "\"spiffe://cluster.local/ns/shop/sa/web\"", "\"spiffe://cluster.local/ns/nodemesh-system/sa/x\"", "\"spiffe://other/ns/a/sa/b\"",
        "\"spiffe://cluster.local/ns//sa/\"", "\"spiffe://\"", "\"/var/run/netns/a\"", "\"/a/../b\"", "\"/..\"", "\"relative\"",
        "\"" + new string('a', 300) + "\"", "\"" + new string('9', 20) + "\"",
        "[]", "{}", "[null]", "[\"\"]", "[0, 70000]", "{\"\": \"\"}", "{\"a\": null}", "{\"k\": \"v v\"}",
        new string('[', 70) + new string(']', 70), new string('[', 20) + "1" + new string(']', 20),
    ];

    private static readonly Gen<Mutation> OneMutation = Gen.Select(Gen.Enum<Kind>(), Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue],
        (kind, target, value, other) => new Mutation(kind, target, value, other));

    /// <summary>A seed document with structural mutations, and sometimes byte mutations of its text.</summary>
    public static Gen<string> Of(IReadOnlyList<(string Name, byte[] Bytes)> seeds) =>
        Gen.Frequency(
            (4, Gen.Select(Gen.Int[0, seeds.Count - 1], OneMutation.Array[1, 6], (seed, mutations) => Apply(seeds[seed].Bytes, mutations))),
            (1, ByteMutations.Of(seeds, maxMutations: 4).Select(b => Encoding.UTF8.GetString(b))));

    private static string Apply(byte[] seed, Mutation[] mutations)
    {
        JsonNode? root = JsonNode.Parse(seed, documentOptions: Lenient);
        var duplicates = new List<(JsonObject Owner, string Name, JsonNode? Value)>();
        foreach (Mutation m in mutations)
        {
            List<(JsonNode? Parent, string? Name, int Index, JsonNode? Node)> all = [];
            Collect(root, null, null, -1, all);
            (JsonNode? parent, string? name, int index, JsonNode? node) = all[m.Target % all.Count];
            // Interesting values go in as placeholders replaced in the text: some (a lone surrogate) a JsonNode cannot hold.
            JsonNode? value = m.Kind == Kind.CopyNode ? all[m.Other % all.Count].Node?.DeepClone() : JsonValue.Create(Placeholder(m.Value % Interesting.Length));
            switch (m.Kind)
            {
                case Kind.Replace or Kind.CopyNode when parent is null:
                    root = value;
                    break;
                case Kind.Replace or Kind.CopyNode when parent is JsonObject o:
                    o[name!] = value;
                    break;
                case Kind.Replace or Kind.CopyNode when parent is JsonArray a:
                    a[index] = value;
                    break;
                case Kind.Remove when parent is JsonObject o:
                    o.Remove(name!);
                    break;
                case Kind.Remove when parent is JsonArray a:
                    a.RemoveAt(index);
                    break;
                case Kind.AddUnknown when node is JsonObject o:
                    o[$"unknown{m.Value % 3}"] = value;
                    break;
                case Kind.AddUnknown when node is JsonArray a:
                    a.Add(value);
                    break;
                case Kind.Duplicate when parent is JsonObject o:
                    duplicates.Add((o, name!, value));
                    break;
            }
        }

        string text = root?.ToJsonString() ?? "null";
        foreach ((JsonObject owner, string name, JsonNode? value) in duplicates)
        {
            // JsonObject cannot hold a name twice; the text can. Inject `"name": value,` after the owner's brace.
            string marker = owner.ToJsonString();
            int at = text.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0 && marker.Length > 2)
            {
                text = text.Insert(at + 1, $"{JsonSerializer.Serialize(name)}:{value?.ToJsonString() ?? "null"},");
            }
        }

        for (int i = 0; i < Interesting.Length; i++)
        {
            text = text.Replace($"\"{Placeholder(i)}\"", Interesting[i], StringComparison.Ordinal);
        }

        return text;
    }

    private static string Placeholder(int index) => $"@@fuzz{index}@@";

    private static void Collect(JsonNode? node, JsonNode? parent, string? name, int index, List<(JsonNode?, string?, int, JsonNode?)> all)
    {
        all.Add((parent, name, index, node));
        switch (node)
        {
            case JsonObject o:
                foreach ((string key, JsonNode? child) in o.ToArray())
                {
                    Collect(child, o, key, -1, all);
                }

                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                {
                    Collect(a[i], a, null, i, all);
                }

                break;
        }
    }
}
