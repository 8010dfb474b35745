using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace NodeMesh.Tests.Netns;

/// <summary>One plug-in run: what the runtime sees (exit code, stdout, stderr).</summary>
internal sealed record CniResult(string Plugin, string Command, int ExitCode, string Stdout, string Stderr)
{
    public bool Succeeded => ExitCode == 0;

    public JsonNode? Json => Stdout.Trim().Length == 0 ? null : JsonNode.Parse(Stdout);

    /// <summary>The CNI error code of a failed run.</summary>
    public int? ErrorCode => ExitCode != 0 ? Json?["code"]?.GetValue<int>() : null;

    public override string ToString() => $"{Plugin} {Command}: exit {ExitCode}\n  stdout: {Stdout.Trim()}\n  stderr: {Stderr.Trim()}";
}

/// <summary>
/// A container runtime's CNI part (what libcni does for containerd and CRI-O), on one node of a topology: runs each
/// plug-in of a network list as an executable inside the node's namespace with the CNI_* variables and its
/// configuration on stdin, chaining each ADD's result into the next as prevResult, caching the final result for CHECK
/// and DEL (DEL in reverse order). The plug-ins are Debian's reference ones (/usr/lib/cni) and the shim under test.
/// </summary>
internal sealed class CniRuntime
{
    private const string ReferencePlugins = "/usr/lib/cni";

    private readonly Topology _topology;
    private readonly string _binDir;
    private readonly Dictionary<string, JsonNode> _cached = [];
    private int _pods;

    public CniRuntime(Topology topology, Node node, JsonObject networkList)
    {
        _topology = topology;
        Node = node;
        NetworkList = networkList;
        _binDir = Path.Combine(topology.WorkDir, $"cni-bin-{node.Name}");
        Directory.CreateDirectory(_binDir);
        foreach (string plugin in new[] { "bridge", "host-local", "loopback" })
        {
            File.CreateSymbolicLink(Path.Combine(_binDir, plugin), Path.Combine(ReferencePlugins, plugin));
        }

        File.CreateSymbolicLink(Path.Combine(_binDir, "nodemesh-cni"), TestPaths.Shim);
    }

    public Node Node { get; }

    public JsonObject NetworkList { get; }

    /// <summary>
    /// The usual chain on a node of the topology: the bridge plug-in on the node's pods0 bridge with host-local
    /// addresses from .100 of the node's pod range, then nodemesh-cni talking to <paramref name="agentSocket"/>.
    /// </summary>
    public static JsonObject BridgeThenShim(Topology topology, Node node, string agentSocket, string version = "1.0.0", JsonObject? shimExtra = null)
    {
        var shim = new JsonObject { ["type"] = "nodemesh-cni", ["agentSocket"] = agentSocket, ["excludeNamespaces"] = new JsonArray("kube-system"), ["timeout"] = "20s" };
        foreach ((string key, JsonNode? value) in shimExtra ?? [])
        {
            shim[key] = value?.DeepClone();
        }

        return new JsonObject
        {
            ["cniVersion"] = version,
            ["name"] = "k8s-pod-network",
            ["plugins"] = new JsonArray(
                new JsonObject
                {
                    ["type"] = "bridge",
                    ["bridge"] = "pods0",
                    ["isGateway"] = true,
                    ["ipMasq"] = false,
                    ["ipam"] = new JsonObject
                    {
                        ["type"] = "host-local",
                        ["dataDir"] = Path.Combine(topology.WorkDir, $"ipam-{node.Name}"),
                        ["ranges"] = new JsonArray(new JsonArray(new JsonObject
                        {
                            ["subnet"] = $"10.240.{node.Index}.0/24",
                            ["rangeStart"] = $"10.240.{node.Index}.100",
                            ["rangeEnd"] = $"10.240.{node.Index}.150",
                            ["gateway"] = $"10.240.{node.Index}.1",
                        })),
                        ["routes"] = new JsonArray(new JsonObject { ["dst"] = "0.0.0.0/0" }),
                    },
                },
                shim),
        };
    }

    /// <summary>A new, empty pod sandbox namespace (lo up), as the runtime creates before calling ADD.</summary>
    public async Task<string> CreateSandboxAsync()
    {
        int index = Interlocked.Increment(ref _pods);
        string name = $"{_topology.Prefix}-n{Node.Index}k{index}";
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "ip", "netns", "add", name);
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(10), "ip", "-n", name, "link", "set", "lo", "up");
        return name;
    }

    /// <summary>Creates a sandbox and runs ADD for a pod; on success the pod has the address from the result.</summary>
    public async Task<(CniPod? Pod, CniResult Result)> AddPodAsync(string kubernetesNamespace, string podName)
    {
        string sandbox = await CreateSandboxAsync();
        int index = int.Parse(sandbox[(sandbox.LastIndexOf('k') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        var probe = new CniPod(_topology, Node, index, kubernetesNamespace, podName, IPAddress.Any);
        CniResult result = await AddAsync(probe.ContainerId, "/var/run/netns/" + sandbox, kubernetesNamespace, podName);
        if (!result.Succeeded)
        {
            return (null, result);
        }

        string address = result.Json!["ips"]![0]!["address"]!.GetValue<string>();
        return (new CniPod(_topology, Node, index, kubernetesNamespace, podName, IPAddress.Parse(address[..address.IndexOf('/', StringComparison.Ordinal)])), result);
    }

    /// <summary>ADD through every plug-in in order; stops at the first failure, as libcni does (the caller then runs DEL).</summary>
    public async Task<CniResult> AddAsync(string containerId, string netns, string kubernetesNamespace, string podName, string ifname = "eth0")
    {
        JsonNode? previous = null;
        CniResult? last = null;
        foreach (JsonObject plugin in Plugins())
        {
            last = await InvokeAsync(plugin, "ADD", Attachment(containerId, netns, ifname, kubernetesNamespace, podName), previous);
            if (!last.Succeeded)
            {
                return last;
            }

            previous = last.Json;
        }

        _cached[containerId] = previous!;
        return last!;
    }

    /// <summary>CHECK through every plug-in, with the cached result.</summary>
    public async Task<CniResult> CheckAsync(CniPod pod) => await CheckAsync(pod.ContainerId, pod.NetnsPath, pod.KubernetesNamespace, pod.PodName);

    public async Task<CniResult> CheckAsync(string containerId, string netns, string kubernetesNamespace, string podName)
    {
        CniResult? last = null;
        foreach (JsonObject plugin in Plugins())
        {
            last = await InvokeAsync(plugin, "CHECK", Attachment(containerId, netns, "eth0", kubernetesNamespace, podName), _cached.GetValueOrDefault(containerId));
            if (!last.Succeeded)
            {
                return last;
            }
        }

        return last!;
    }

    /// <summary>DEL through every plug-in in reverse order (all of them, whatever fails), with the cached result; returns the first failure or the last run.</summary>
    public async Task<CniResult> DeleteAsync(CniPod pod) => await DeleteAsync(pod.ContainerId, pod.NetnsPath, pod.KubernetesNamespace, pod.PodName);

    public async Task<CniResult> DeleteAsync(string containerId, string? netns, string kubernetesNamespace, string podName)
    {
        CniResult? failed = null;
        CniResult? last = null;
        foreach (JsonObject plugin in Plugins().Reverse())
        {
            last = await InvokeAsync(plugin, "DEL", Attachment(containerId, netns, "eth0", kubernetesNamespace, podName), _cached.GetValueOrDefault(containerId));
            failed ??= last.Succeeded ? null : last;
        }

        _cached.Remove(containerId);
        return failed ?? last!;
    }

    /// <summary>One plug-in's <paramref name="command"/> again for a pod, with the cached result (a runtime retrying a step).</summary>
    public Task<CniResult> RepeatAsync(string type, string command, CniPod pod) =>
        InvokeAsync(Plugins().Single(p => p["type"]!.GetValue<string>() == type), command,
            Attachment(pod.ContainerId, pod.NetnsPath, "eth0", pod.KubernetesNamespace, pod.PodName), _cached.GetValueOrDefault(pod.ContainerId));

    /// <summary>One plug-in's <paramref name="command"/> for an attachment this runtime did not make (no cached result).</summary>
    public Task<CniResult> RunOneAsync(string type, string command, string containerId, string netns, string kubernetesNamespace, string podName) =>
        InvokeAsync(Plugins().Single(p => p["type"]!.GetValue<string>() == type), command, Attachment(containerId, netns, "eth0", kubernetesNamespace, podName), previous: null);

    /// <summary>STATUS (CNI 1.1) of the plug-in named <paramref name="type"/>.</summary>
    public Task<CniResult> StatusAsync(string type = "nodemesh-cni") =>
        InvokeAsync(Plugins().Single(p => p["type"]!.GetValue<string>() == type), "STATUS", new Dictionary<string, string>(), previous: null);

    /// <summary>GC (CNI 1.1) of the plug-in named <paramref name="type"/>: the attachments the runtime still has.</summary>
    public Task<CniResult> GcAsync(IEnumerable<CniPod> keep, string type = "nodemesh-cni")
    {
        JsonObject plugin = (JsonObject)Plugins().Single(p => p["type"]!.GetValue<string>() == type).DeepClone();
        plugin["cni.dev/valid-attachments"] = new JsonArray([.. keep.Select(p => (JsonNode)new JsonObject { ["containerID"] = p.ContainerId, ["ifname"] = "eth0" })]);
        return InvokeAsync(plugin, "GC", new Dictionary<string, string>(), previous: null);
    }

    public Task<CniResult> VersionAsync(string type = "nodemesh-cni") =>
        RunAsync(type, "VERSION", new Dictionary<string, string>(), """{"cniVersion":"1.1.0"}""");

    /// <summary>Runs a plug-in with exactly the given stdin (for malformed input).</summary>
    public Task<CniResult> RunRawAsync(string type, string command, IReadOnlyDictionary<string, string> variables, string stdin) => RunAsync(type, command, variables, stdin);

    public static Dictionary<string, string> Attachment(string containerId, string? netns, string ifname, string kubernetesNamespace, string podName)
    {
        var variables = new Dictionary<string, string>
        {
            ["CNI_CONTAINERID"] = containerId,
            ["CNI_IFNAME"] = ifname,
            ["CNI_ARGS"] = $"IgnoreUnknown=1;K8S_POD_NAMESPACE={kubernetesNamespace};K8S_POD_NAME={podName};K8S_POD_INFRA_CONTAINER_ID={containerId}",
        };
        if (netns is not null)
        {
            variables["CNI_NETNS"] = netns;
        }

        return variables;
    }

    private IEnumerable<JsonObject> Plugins() => NetworkList["plugins"]!.AsArray().Select(p => p!.AsObject());

    private Task<CniResult> InvokeAsync(JsonObject plugin, string command, IReadOnlyDictionary<string, string> variables, JsonNode? previous)
    {
        // The configuration each plug-in gets: its own object, with the list's version and name, and the previous result.
        var config = (JsonObject)plugin.DeepClone();
        config["cniVersion"] = NetworkList["cniVersion"]!.DeepClone();
        config["name"] = NetworkList["name"]!.DeepClone();
        if (previous is not null)
        {
            config["prevResult"] = previous.DeepClone();
        }

        return RunAsync(plugin["type"]!.GetValue<string>(), command, variables, config.ToJsonString());
    }

    private async Task<CniResult> RunAsync(string type, string command, IReadOnlyDictionary<string, string> variables, string stdin)
    {
        var start = new ProcessStartInfo("ip")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "netns", "exec", Node.Namespace, Path.Combine(_binDir, type) })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["CNI_COMMAND"] = command;
        start.Environment["CNI_PATH"] = _binDir;
        foreach ((string key, string value) in variables)
        {
            start.Environment[key] = value;
        }

        using Process process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{type} {command} did not finish within 60 s");
        }

        return new CniResult(type, command, process.ExitCode, await stdout, await stderr);
    }
}
