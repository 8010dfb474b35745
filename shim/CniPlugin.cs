using System.Text.Json;
using NodeMesh.Contracts;
using NodeMesh.Interop;

namespace NodeMesh.Shim;

/// <summary>
/// The CNI plug-in the container runtime runs for every pod, chained after the cluster's network plug-in (spec 1.0.0,
/// with STATUS and GC from 1.1.0). ADD hands the agent the pod's network namespace and returns only once the agent has
/// captured the pod, so the pod's containers never run uncaptured; with the agent unreachable it fails (fail closed),
/// unless the pod's namespace is excluded. DEL is idempotent and succeeds when the agent is gone.
/// </summary>
internal static class CniPlugin
{
    private const int MaxConfigBytes = 1024 * 1024;
    private const string LatestVersion = "1.1.0";

    public static async Task<int> RunAsync(string? command, Func<string, string?> environment, Stream stdin, TextWriter stdout, TextWriter stderr)
    {
        string version = LatestVersion;
        try
        {
            if (string.IsNullOrEmpty(command))
            {
                await stderr.WriteLineAsync("nodemesh-cni: this is a CNI plug-in; the container runtime runs it with CNI_COMMAND set (ADD, DEL, CHECK, STATUS, GC, VERSION).");
                throw new CniError(CniError.InvalidEnvironment, "nodemesh-cni: CNI_COMMAND is not set", "ADD, DEL, CHECK, STATUS, GC or VERSION");
            }

            if (command == "VERSION")
            {
                await stdout.WriteLineAsync(VersionResult());
                return 0;
            }

            if (command is not ("ADD" or "DEL" or "CHECK" or "STATUS" or "GC"))
            {
                throw new CniError(CniError.InvalidEnvironment, $"nodemesh-cni: CNI_COMMAND '{Printable.Of(command)}' is not supported", "ADD, DEL, CHECK, STATUS, GC or VERSION");
            }

            NetworkConfig config = NetworkConfig.Parse(await ReadBoundedAsync(stdin));
            version = config.CniVersion;
            CniEnvironment env = CniEnvironment.Read(command, environment);
            string? output = command switch
            {
                "ADD" => await AddAsync(config, env),
                "DEL" => await DeleteAsync(config, env, stderr),
                "CHECK" => await CheckAsync(config, env),
                "STATUS" => await StatusAsync(config),
                _ => await CollectAsync(config, stderr),
            };
            if (output is not null)
            {
                await stdout.WriteLineAsync(output);
            }

            return 0;
        }
        catch (CniError error)
        {
            await stdout.WriteLineAsync(error.ToJson(version));
            await stderr.WriteLineAsync($"{error.Message} ({error.Details})");
            return 1;
        }
    }

    private static string VersionResult()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("cniVersion", LatestVersion);
            json.WriteStartArray("supportedVersions");
            foreach (string supported in NetworkConfig.SupportedVersions)
            {
                json.WriteStringValue(supported);
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static async Task<string?> AddAsync(NetworkConfig config, CniEnvironment env)
    {
        JsonElement previous = config.PrevResult ?? throw new CniError(CniError.InvalidNetworkConfig,
            "nodemesh-cni: no prevResult: it must be chained after the cluster's network plug-in, as the last plug-in of the list",
            $"network '{Printable.Of(config.Name)}'");
        List<string> addresses = PreviousResult.Addresses(previous);
        PodInfo pod = Pod(env, addresses, requireName: true);
        if (config.ExcludeNamespaces.Contains(pod.Namespace))
        {
            return PreviousResult.Render(previous, config.CniVersion);
        }

        using SafeFileDescriptor netns = OpenNamespace(env.Netns!);
        ApiResponse response = await AskAsync(config, new ApiRequest { Command = "pod-add", Pod = pod }, netns,
            $"pod {pod.Namespace}/{pod.Name} is not started uncaptured (fail closed); start the agent, or exclude the namespace in the CNI configuration (excludeNamespaces)");
        return response.Ok
            ? PreviousResult.Render(previous, config.CniVersion)
            : throw new CniError(CniError.AgentRefused, $"nodemesh-cni: the agent refused pod {pod.Namespace}/{pod.Name}: {response.Error}", "the pod is not started uncaptured");
    }

    private static async Task<string?> DeleteAsync(NetworkConfig config, CniEnvironment env, TextWriter stderr)
    {
        if (env.PodNamespace is { } ns && config.ExcludeNamespaces.Contains(ns))
        {
            return null;
        }

        try
        {
            ApiResponse response = await AgentClient.SendAsync(config.AgentSocket, new ApiRequest { Command = "pod-remove", Pod = Pod(env, [], requireName: false) }, null, config.Timeout);
            return response.Ok
                ? null
                : throw new CniError(CniError.AgentRefused, $"nodemesh-cni: the agent could not remove container {env.ContainerId}: {response.Error}", "DEL");
        }
        catch (AgentUnreachableException ex)
        {
            // Nothing to undo without the agent: its rules live in the pod's namespace and go with it, and a restarted agent forgets pods that are gone.
            await stderr.WriteLineAsync($"nodemesh-cni: DEL of {env.ContainerId}: {ex.Message}; nothing to remove");
            return null;
        }
    }

    private static async Task<string?> CheckAsync(NetworkConfig config, CniEnvironment env)
    {
        if (config.PrevResult is null)
        {
            throw new CniError(CniError.InvalidNetworkConfig, "nodemesh-cni: CHECK needs prevResult", $"network '{Printable.Of(config.Name)}'");
        }

        PodInfo pod = Pod(env, PreviousResult.Addresses(config.PrevResult.Value), requireName: true);
        if (config.ExcludeNamespaces.Contains(pod.Namespace))
        {
            return null;
        }

        using SafeFileDescriptor netns = OpenNamespace(env.Netns!);
        ApiResponse response = await AskAsync(config, new ApiRequest { Command = "pod-check", Pod = pod }, netns, "the pod's capture cannot be checked");
        return response.Ok ? null : throw new CniError(CniError.AgentRefused, $"nodemesh-cni: pod {pod.Namespace}/{pod.Name} is not captured as it should be: {response.Error}", "CHECK");
    }

    /// <summary>STATUS (CNI 1.1): whether pods can be added now, i.e. the agent is up and ready.</summary>
    private static async Task<string?> StatusAsync(NetworkConfig config)
    {
        ApiResponse response;
        try
        {
            response = await AgentClient.SendAsync(config.AgentSocket, new ApiRequest { Command = "ready" }, null, config.Timeout);
        }
        catch (AgentUnreachableException ex)
        {
            throw new CniError(CniError.PluginNotAvailable, "nodemesh-cni: " + ex.Message, "pods cannot be added until the agent is up (ADD fails closed)");
        }

        return response.Ok ? null : throw new CniError(CniError.PluginNotAvailable, $"nodemesh-cni: the agent is {response.Error}", "pods cannot be added until the agent is ready");
    }

    /// <summary>GC (CNI 1.1): the agent forgets pods of containers the runtime no longer has.</summary>
    private static async Task<string?> CollectAsync(NetworkConfig config, TextWriter stderr)
    {
        try
        {
            ApiResponse response = await AgentClient.SendAsync(config.AgentSocket, new ApiRequest { Command = "pod-gc", ValidContainers = config.ValidContainers ?? [] }, null, config.Timeout);
            return response.Ok ? null : throw new CniError(CniError.AgentRefused, $"nodemesh-cni: GC refused by the agent: {response.Error}", "GC");
        }
        catch (AgentUnreachableException ex)
        {
            await stderr.WriteLineAsync($"nodemesh-cni: GC: {ex.Message}; the agent reconciles its pods when it starts");
            return null;
        }
    }

    private static async Task<ApiResponse> AskAsync(NetworkConfig config, ApiRequest request, SafeFileDescriptor netns, string consequence)
    {
        try
        {
            return await AgentClient.SendAsync(config.AgentSocket, request, netns, config.Timeout);
        }
        catch (AgentUnreachableException ex)
        {
            throw new CniError(CniError.TryAgainLater, "nodemesh-cni: " + ex.Message, consequence);
        }
    }

    private static PodInfo Pod(CniEnvironment env, List<string> addresses, bool requireName)
    {
        if (requireName && (env.PodNamespace is null || env.PodName is null))
        {
            throw new CniError(CniError.InvalidEnvironment, "nodemesh-cni: CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME",
                "the kubelet passes them for every pod; nodemesh-cni captures Kubernetes pods");
        }

        return new PodInfo
        {
            Namespace = env.PodNamespace ?? "",
            Name = env.PodName ?? "",
            Uid = env.PodUid,
            ContainerId = env.ContainerId!,
            Interface = env.Interface,
            Netns = env.Netns,
            Ips = addresses,
        };
    }

    /// <summary>Opens the pod's namespace and makes sure it is one: the agent gets the descriptor, never the path alone.</summary>
    private static SafeFileDescriptor OpenNamespace(string path)
    {
        SafeFileDescriptor netns;
        try
        {
            netns = NetworkNamespace.Open(path);
        }
        catch (InteropException ex) when (ex.Errno == 2)
        {
            throw new CniError(CniError.ContainerUnknown, $"nodemesh-cni: CNI_NETNS {Printable.Of(path)} does not exist", "the container's network namespace is gone");
        }
        catch (InteropException ex)
        {
            throw new CniError(CniError.IoFailure, $"nodemesh-cni: cannot open CNI_NETNS {Printable.Of(path)}: {ex.Message}", "the container's network namespace");
        }

        if (NetworkNamespace.NotANetworkNamespace(netns) is { } what)
        {
            netns.Dispose();
            throw new CniError(CniError.InvalidEnvironment, $"nodemesh-cni: CNI_NETNS {Printable.Of(path)} is {what}", "CNI_NETNS must be the path of a network namespace");
        }

        return netns;
    }

    private static async Task<ReadOnlyMemory<byte>> ReadBoundedAsync(Stream stdin)
    {
        byte[] buffer = new byte[MaxConfigBytes + 1];
        int read = await stdin.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false);
        return read > MaxConfigBytes
            ? throw new CniError(CniError.DecodeFailure, $"nodemesh-cni: the network configuration is larger than {MaxConfigBytes} bytes", "stdin")
            : buffer.AsMemory(0, read);
    }
}
