using NodeMesh.Contracts;

namespace NodeMesh.Shim;

/// <summary>
/// The CNI_* variables of one invocation, checked before anything uses them: a value that fails its rule is a CNI
/// error naming the variable, and never reaches a path, a command or the agent.
/// </summary>
internal sealed class CniEnvironment
{
    private const int MaxArgsLength = 16 * 1024;
    private const int MaxPathLength = 4096;

    private CniEnvironment(string command) => Command = command;

    public string Command { get; }

    public string? ContainerId { get; private init; }

    public string? Netns { get; private init; }

    public string? Interface { get; private init; }

    /// <summary>CNI_ARGS (<c>K8S_POD_NAMESPACE=...;K8S_POD_NAME=...</c>), by key.</summary>
    public IReadOnlyDictionary<string, string> Args { get; private init; } = new Dictionary<string, string>();

    public string? PodNamespace => Args.GetValueOrDefault("K8S_POD_NAMESPACE");

    public string? PodName => Args.GetValueOrDefault("K8S_POD_NAME");

    public string? PodUid => Args.GetValueOrDefault("K8S_POD_UID");

    /// <summary>Reads the variables <paramref name="command"/> needs (ADD, CHECK: all; DEL: the netns may be gone).</summary>
    public static CniEnvironment Read(string command, Func<string, string?> variable)
    {
        bool attachment = command is "ADD" or "DEL" or "CHECK";
        if (!attachment)
        {
            return new CniEnvironment(command);
        }

        string containerId = variable("CNI_CONTAINERID") is { } id && CniNames.IsContainerId(id)
            ? id
            : throw Invalid("CNI_CONTAINERID", variable("CNI_CONTAINERID"), "1-255 of letters, digits, '_', '.', '-', starting with a letter or digit");
        string ifname = variable("CNI_IFNAME") is { } name && CniNames.IsInterfaceName(name)
            ? name
            : throw Invalid("CNI_IFNAME", variable("CNI_IFNAME"), "1-15 of letters, digits, '_', '.', '-', '@', '+'");
        string? netns = variable("CNI_NETNS");
        if (string.IsNullOrEmpty(netns))
        {
            netns = command == "DEL" ? null : throw Invalid("CNI_NETNS", netns, "the path of the container's network namespace");
        }
        else if (netns.Length > MaxPathLength || netns[0] != '/' || netns.Any(char.IsControl))
        {
            throw Invalid("CNI_NETNS", netns, "an absolute path (of the container's network namespace)");
        }

        return new CniEnvironment(command)
        {
            ContainerId = containerId,
            Interface = ifname,
            Netns = netns,
            Args = ParseArgs(variable("CNI_ARGS")),
        };
    }

    /// <summary>
    /// CNI_ARGS: <c>KEY=VALUE</c> pairs joined by ';'. The Kubernetes keys this plug-in reads are checked against
    /// Kubernetes' own naming rules; other keys are kept only if they look like keys.
    /// </summary>
    internal static Dictionary<string, string> ParseArgs(string? text)
    {
        var args = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(text))
        {
            return args;
        }

        if (text.Length > MaxArgsLength)
        {
            throw Invalid("CNI_ARGS", text, $"at most {MaxArgsLength} characters");
        }

        foreach (string pair in text.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int equals = pair.IndexOf('=', StringComparison.Ordinal);
            string key = equals > 0 ? pair[..equals] : "";
            if (key.Length == 0 || !key.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '_'))
            {
                throw Invalid("CNI_ARGS", pair, "KEY=VALUE pairs joined by ';' (keys of letters, digits, '_')");
            }

            string value = pair[(equals + 1)..];
            bool valid = key switch
            {
                "K8S_POD_NAMESPACE" => KubernetesNames.IsLabel(value),
                "K8S_POD_NAME" => KubernetesNames.IsSubdomain(value),
                "K8S_POD_UID" => KubernetesNames.IsUid(value),
                "K8S_POD_INFRA_CONTAINER_ID" => CniNames.IsContainerId(value),
                _ => true,
            };
            if (!valid)
            {
                throw Invalid($"CNI_ARGS {key}", value, key == "K8S_POD_UID" ? "a Kubernetes uid" : "a Kubernetes name (a-z, 0-9, '-', '.')");
            }

            args[key] = value;
        }

        return args;
    }

    private static CniError Invalid(string variable, string? value, string rule) =>
        new(CniError.InvalidEnvironment,
            value is null or "" ? $"nodemesh-cni: {variable} is not set" : $"nodemesh-cni: {variable} '{Printable.Of(value)}' is not valid",
            $"{variable} must be {rule}");
}
