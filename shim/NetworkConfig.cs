using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.Shim;

/// <summary>
/// The network configuration the runtime writes to stdin: the chained list's cniVersion and name, this plug-in's
/// own keys (agentSocket, excludeNamespaces, timeout), and the previous plug-in's result, passed through untouched.
/// </summary>
internal sealed class NetworkConfig
{
    public const string DefaultAgentSocket = "/run/nodemesh/agent.sock";

    /// <summary>The versions whose results this plug-in passes through (their result formats are compatible for a pass-through).</summary>
    public static readonly string[] SupportedVersions = ["0.4.0", "1.0.0", "1.1.0"];

    private const int MaxSocketPath = 107; // sun_path holds 108 bytes with the terminating NUL

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(5);

    private NetworkConfig(string cniVersion, string name, JsonElement? prevResult)
    {
        CniVersion = cniVersion;
        Name = name;
        PrevResult = prevResult;
    }

    public string CniVersion { get; }

    public string Name { get; }

    public JsonElement? PrevResult { get; }

    public string AgentSocket { get; private init; } = DefaultAgentSocket;

    /// <summary>Kubernetes namespaces whose pods are not captured: the plug-in passes them through without asking the agent.</summary>
    public IReadOnlySet<string> ExcludeNamespaces { get; private init; } = new HashSet<string>(StringComparer.Ordinal);

    public TimeSpan Timeout { get; private init; } = DefaultTimeout;

    /// <summary>GC (CNI 1.1): the attachments the runtime still has (<c>cni.dev/valid-attachments</c>), by container id.</summary>
    public IReadOnlyList<string>? ValidContainers { get; private init; }

    /// <summary>Parses and checks the configuration; every error is a <see cref="CniError"/> naming the key.</summary>
    public static NetworkConfig Parse(ReadOnlyMemory<byte> stdin)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(stdin, new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (JsonException ex)
        {
            throw new CniError(CniError.DecodeFailure, "nodemesh-cni: the network configuration on stdin is not valid JSON", ex.Message);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Invalid("the network configuration must be a JSON object", root.ValueKind.ToString());
            }

            string version = RequiredString(root, "cniVersion");
            if (!SupportedVersions.Contains(version, StringComparer.Ordinal))
            {
                throw new CniError(CniError.IncompatibleVersion, $"nodemesh-cni: cniVersion '{Printable.Of(version)}' is not supported",
                    $"supported: {string.Join(", ", SupportedVersions)}");
            }

            string name = RequiredString(root, "name");
            JsonElement? prevResult = null;
            if (root.TryGetProperty("prevResult", out JsonElement prev))
            {
                if (prev.ValueKind != JsonValueKind.Object)
                {
                    throw Invalid("prevResult must be an object (the previous plug-in's result)", prev.ValueKind.ToString());
                }

                prevResult = prev.Clone();
            }

            return new NetworkConfig(version, name, prevResult)
            {
                AgentSocket = OptionalString(root, "agentSocket") is { } socket ? CheckSocket(socket) : DefaultAgentSocket,
                ExcludeNamespaces = ParseNamespaces(root),
                Timeout = OptionalString(root, "timeout") is { } timeout ? CheckTimeout(timeout) : DefaultTimeout,
                ValidContainers = ParseValidAttachments(root),
            };
        }
    }

    private static string CheckSocket(string path) =>
        path.Length is > 1 and <= MaxSocketPath && path[0] == '/' && !path.Any(char.IsControl)
            ? path
            : throw Invalid($"agentSocket: '{Printable.Of(path)}' is not an absolute path of at most {MaxSocketPath} characters", "the agent's apiSocket, e.g. " + DefaultAgentSocket);

    private static TimeSpan CheckTimeout(string text) =>
        Duration.TryParse(text, out TimeSpan value, out string? error)
            ? value > TimeSpan.Zero && value <= MaxTimeout ? value : throw Invalid($"timeout: {text} must be more than 0 and at most 5m", "e.g. \"30s\"")
            : throw Invalid("timeout: " + error, "e.g. \"30s\"");

    private static HashSet<string> ParseNamespaces(JsonElement root)
    {
        var namespaces = new HashSet<string>(StringComparer.Ordinal);
        if (!root.TryGetProperty("excludeNamespaces", out JsonElement list))
        {
            return namespaces;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw Invalid("excludeNamespaces must be an array of namespace names", list.ValueKind.ToString());
        }

        int i = 0;
        foreach (JsonElement item in list.EnumerateArray())
        {
            string? value = item.ValueKind == JsonValueKind.String ? item.GetString() : null;
            if (!KubernetesNames.IsLabel(value))
            {
                throw Invalid($"excludeNamespaces[{i}]: '{Printable.Of(value ?? item.ValueKind.ToString())}' is not a Kubernetes namespace name", "1-63 of a-z, 0-9, '-'");
            }

            namespaces.Add(value!);
            i++;
        }

        return namespaces;
    }

    private static List<string>? ParseValidAttachments(JsonElement root)
    {
        if (!root.TryGetProperty("cni.dev/valid-attachments", out JsonElement list))
        {
            return null;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw Invalid("cni.dev/valid-attachments must be an array", list.ValueKind.ToString());
        }

        var ids = new List<string>();
        foreach (JsonElement item in list.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("containerID", out JsonElement id) || id.ValueKind != JsonValueKind.String
                || !CniNames.IsContainerId(id.GetString()))
            {
                throw Invalid($"cni.dev/valid-attachments[{ids.Count}]: needs a containerID of letters, digits, '_', '.', '-'", item.GetRawText().Length > 200 ? "(long)" : item.GetRawText());
            }

            ids.Add(id.GetString()!);
        }

        return ids;
    }

    private static string RequiredString(JsonElement root, string key) =>
        OptionalString(root, key) ?? throw Invalid($"'{key}' is missing", "the runtime writes the network list's configuration to stdin");

    private static string? OptionalString(JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw Invalid($"'{key}' must be a string", value.ValueKind.ToString());
    }

    private static CniError Invalid(string message, string details) => new(CniError.InvalidNetworkConfig, "nodemesh-cni: " + message, details);
}
