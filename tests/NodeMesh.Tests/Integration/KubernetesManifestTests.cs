using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Admin;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Telemetry;
using NodeMesh.Tests.Netns;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// packaging/kubernetes: every manifest reads strictly into the Kubernetes models, and what they say agrees with
/// the agent itself: the probes' port is the agent's readiness port and their paths are ones its admin server
/// answers, the ConfigMap's configuration passes the agent's validation, the DaemonSet mounts what that
/// configuration names, RBAC grants exactly the reads discovery needs, and the pod holds only the capabilities
/// it needs. install-cni.sh runs for real on temporary CNI directories.
/// </summary>
public sealed class KubernetesManifestTests : IDisposable
{
    private const string Ns = "nodemesh-system";
    private readonly string _temp = Directory.CreateTempSubdirectory("nodemesh-k8s-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    // ---- Parsing ----

    [Fact]
    public void EveryManifest_ParsesStrictly_AndTheKustomizationListsEachOfThem()
    {
        var kustomization = KubernetesManifests.Single<KubernetesManifests.Kustomization>("kustomization.yaml");
        string[] yamlFiles = Directory.GetFiles(KubernetesManifests.Directory, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order().ToArray()!;
        Assert.Equal(yamlFiles, kustomization.Resources.Order().ToArray());

        var kinds = kustomization.Resources.SelectMany(KubernetesManifests.ParseFile).Select(o => o.GetType().Name).Order().ToArray();
        Assert.Equal(
            new[] { nameof(V1ClusterRole), nameof(V1ClusterRoleBinding), nameof(V1ConfigMap), nameof(V1DaemonSet), nameof(V1Namespace), nameof(V1ResourceQuota), nameof(V1ServiceAccount) },
            kinds);
    }

    [Theory]
    [InlineData("imagePullPolicy:", "imagePullPolicyy:", "imagePullPolicyy")]
    [InlineData("mountPropagation:", "mountPropgation:", "mountPropgation")]
    [InlineData("terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: thirty", "terminationGracePeriodSeconds")]
    [InlineData("kind: DaemonSet", "kind: DaemonSett", "DaemonSett")]
    [InlineData("  hostNetwork: true", "  hostNetwork: true\n      hostNetwork: true", "hostNetwork")]
    public void AMisspelledOrMistypedField_IsRefused_Naming_It(string original, string broken, string named)
    {
        string yaml = File.ReadAllText(Path.Combine(KubernetesManifests.Directory, "daemonset.yaml"));
        Assert.Contains(original, yaml, StringComparison.Ordinal);
        _ = KubernetesManifests.Parse(yaml, "daemonset.yaml"); // the file as it is reads
        int at = yaml.IndexOf(original, StringComparison.Ordinal);
        string changed = string.Concat(yaml.AsSpan(0, at), broken, yaml.AsSpan(at + original.Length));

        var ex = Assert.ThrowsAny<Exception>(() => KubernetesManifests.Parse(changed, "daemonset.yaml"));
        Assert.Contains(named, ex.ToString(), StringComparison.Ordinal);
    }

    // ---- The agent's ports, paths and configuration ----

    [Fact]
    public void Probes_AreOnTheAgentsReadinessPort()
    {
        V1Container agent = AgentContainer();
        AgentConfig config = ConfigMapConfigWithoutDiscovery();
        int readiness = new PortsConfig().Readiness;
        Assert.Equal(readiness, config.Ports.Readiness);
        foreach ((string name, V1Probe? probe) in Probes(agent))
        {
            Assert.NotNull(probe);
            Assert.NotNull(probe.HttpGet);
            Assert.Equal(readiness.ToString(System.Globalization.CultureInfo.InvariantCulture), probe.HttpGet.Port.Value);
            Assert.True(probe.HttpGet.Scheme is null or "HTTP", $"{name}: {probe.HttpGet.Scheme}");
        }

        Assert.Contains(agent.Ports, p => p.ContainerPort == readiness);
        Assert.Contains(agent.Ports, p => p.ContainerPort == config.Ports.Tunnel);
        Assert.Contains(agent.Ports, p => p.ContainerPort == config.Ports.Metrics);
    }

    /// <summary>
    /// The agent's own admin server (in process, on a free port) answers the probes' paths: liveness and start-up
    /// 200 whatever the agent's state, readiness 503 while something is missing and 200 once nothing is. An unknown
    /// path is a 404, so a probe path the agent does not serve fails here.
    /// </summary>
    [Fact]
    public async Task ProbePaths_AreServedByTheAgent_ReadinessFollowsTheAgentsState_LivenessDoesNot()
    {
        V1Container agent = AgentContainer();
        var state = new StubAgentState();
        int port = FreePort();
        using MeterProvider meters = Sdk.CreateMeterProviderBuilder().Build();
        await using var usage = new NodeMesh.Consumers.ConsumerUsage(null);
        await using var store = new NodeMesh.Consumers.ConsumerFileStore(Path.GetTempPath());
        await using var server = new AdminHttpServer(new AdminPorts(0, 0, port), new TelemetryPlan(0, null, OtlpProtocol.Grpc, "nodemesh"), state,
            new NodeMesh.Consumers.ConsumerService(store, usage, _ => 0), new LogLevelSwitch(LogLevel.Warning), meters, NullLoggerFactory.Instance);
        await server.StartAsync(CancellationToken.None);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/healthz/not-a-path")).StatusCode);
        state.Missing = ["the node certificate"];
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync(agent.ReadinessProbe.HttpGet.Path)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(agent.LivenessProbe.HttpGet.Path)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(agent.StartupProbe.HttpGet.Path)).StatusCode);
        state.Missing = [];
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(agent.ReadinessProbe.HttpGet.Path)).StatusCode);
    }

    /// <summary>
    /// The ConfigMap's configuration, made this node's by node-config.sh as the agent container does it, passes the
    /// agent's validation in everything but the Kubernetes discovery section (checked below once the agent has it).
    /// </summary>
    [Fact]
    public async Task ConfigMapConfig_MadeANodesByNodeConfigSh_PassesTheAgentsValidation_ApartFromKubernetesDiscovery()
    {
        string rendered = await RenderNodeConfigAsync("worker-1.example", "10.0.3.17");
        JsonObject json = JsonNode.Parse(File.ReadAllText(rendered))!.AsObject();
        Assert.Equal("kubernetes", json["discovery"]!["source"]!.GetValue<string>());
        JsonObject kubernetes = json["discovery"]!["kubernetes"]!.AsObject();
        Assert.Empty(kubernetes.Select(p => p.Key).Except(["kubeconfig", "nodeName", "excludeNamespaces"]));
        Assert.Equal(["kube-system", Ns], kubernetes["excludeNamespaces"]!.AsArray().Select(n => n!.GetValue<string>()));
        json.Remove("discovery");

        AgentConfig config = ConfigLoader.Parse(json.ToJsonString(), "configmap.yaml config.json, node-config.sh, without discovery");
        Assert.Equal("worker-1.example", config.Node.Name);
        Assert.Equal("10.0.3.17", config.Node.Address);
        Assert.Equal("embedded", config.Certificates.Source);
        Assert.NotEmpty(config.Mesh.Cidrs);
    }

    [Fact]
    public async Task NodeConfigSh_WithoutTheNodesNameOrAddress_Fails_AndWritesNothing()
    {
        string template = Path.Combine(_temp, "config.json"), output = Path.Combine(_temp, "node.json");
        File.WriteAllText(template, ConfigMapJson());
        CommandResult result = await Command.RunAsync("env", "-u", "NODE_NAME", "NODE_IP=10.0.3.17", "sh", NodeConfigScript, template, output);
        Assert.False(result.Succeeded, result.ToString());
        Assert.Contains("NODE_NAME is not set", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(["config.json"], Directory.GetFiles(_temp).Select(Path.GetFileName));
    }

    [Fact]
    public async Task ConfigMapConfig_MadeANodesByNodeConfigSh_PassesNodemeshCheck()
    {
        string rendered = await RenderNodeConfigAsync("worker-1.example", "10.0.3.17");
        CommandResult check = await Command.RunAsync(TestPaths.NodeMesh, "check", "--config", rendered);
        Assert.True(check.Succeeded, check.ToString());
        _ = ConfigLoader.Load(rendered);
    }

    [Fact]
    public void DaemonSet_MountsWhatTheConfigurationNames_AndRunsIt()
    {
        V1DaemonSet ds = DaemonSet();
        V1PodSpec pod = ds.Spec.Template.Spec;
        V1Container agent = AgentContainer();
        AgentConfig config = ConfigMapConfigWithoutDiscovery();

        string script = string.Join(' ', agent.Command.Concat(agent.Args));
        Assert.Contains("node-config.sh /etc/nodemesh/config/config.json /etc/nodemesh/node/config.json", script, StringComparison.Ordinal);
        Assert.Contains("exec /usr/bin/nodemesh run --config /etc/nodemesh/node/config.json", script, StringComparison.Ordinal);
        Assert.Equal("nodemesh-config", Volume(pod, Mount(agent, "/etc/nodemesh/config").Name).ConfigMap.Name);
        Assert.NotNull(Volume(pod, Mount(agent, "/etc/nodemesh/node").Name).EmptyDir);
        Assert.Contains("config.json", KubernetesManifests.Single<V1ConfigMap>("configmap.yaml").Data.Keys);

        V1SecretVolumeSource ca = Volume(pod, Mount(agent, config.Ca.Dir).Name).Secret;
        Assert.Equal("nodemesh-ca", ca.SecretName);
        Assert.Equal(Convert.ToInt32("400", 8), ca.DefaultMode); // 0400, read as kubectl reads YAML (octal)
        AssertHostPath(pod, agent, config.StateDir, "/var/lib/nodemesh");
        AssertHostPath(pod, agent, Path.GetDirectoryName(config.ApiSocket)!, "/run/nodemesh");
        V1VolumeMount netns = Mount(agent, "/var/run/netns");
        Assert.Equal("HostToContainer", netns.MountPropagation);
        AssertHostPath(pod, agent, "/var/run/netns", "/var/run/netns");
        Assert.Equal("spec.nodeName", agent.Env.Single(e => e.Name == "NODE_NAME").ValueFrom.FieldRef.FieldPath);
        Assert.Equal("status.hostIP", agent.Env.Single(e => e.Name == "NODE_IP").ValueFrom.FieldRef.FieldPath);

        // The installer writes the host's CNI directories (as its environment names them) and points the shim at the agent's socket.
        V1Container install = Assert.Single(pod.InitContainers);
        Assert.Equal("/usr/lib/nodemesh/install-cni.sh", Assert.Single(install.Command));
        Assert.Equal(agent.Image, install.Image);
        string Env(string name) => install.Env.Single(e => e.Name == name).Value;
        AssertHostPath(pod, install, Env("CNI_BIN_DIR"), "/opt/cni/bin");
        AssertHostPath(pod, install, Env("CNI_NET_DIR"), "/etc/cni/net.d");
        Assert.Equal(config.ApiSocket, Env("AGENT_SOCKET"));
        Assert.Contains(Ns, Env("EXCLUDE_NAMESPACES").Split(','));
    }

    [Fact]
    public void DaemonSet_HostNetwork_CriticalOnEveryNode_OneNodeAtATime_AndOutlivesTheDrain()
    {
        V1DaemonSet ds = DaemonSet();
        V1PodSpec pod = ds.Spec.Template.Spec;
        AgentConfig config = ConfigMapConfigWithoutDiscovery();
        Assert.Equal(Ns, ds.Metadata.NamespaceProperty);
        Assert.True(pod.HostNetwork);
        Assert.Equal("ClusterFirstWithHostNet", pod.DnsPolicy);
        Assert.Equal("system-node-critical", pod.PriorityClassName);
        Assert.Contains(pod.Tolerations, t => t.OperatorProperty == "Exists" && t.Key is null && t.Effect is null);
        Assert.Equal("RollingUpdate", ds.Spec.UpdateStrategy.Type);
        Assert.Equal("1", ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.Value);
        Assert.True(pod.TerminationGracePeriodSeconds > config.DrainTimeout.TotalSeconds, $"{pod.TerminationGracePeriodSeconds}s, drainTimeout {config.DrainTimeout}");
        Assert.True(pod.TerminationGracePeriodSeconds > new AgentConfig().DrainTimeout.TotalSeconds);
        Assert.Equal(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Metadata.Labels);
        foreach (V1Container c in pod.Containers.Concat(pod.InitContainers))
        {
            Assert.True(c.Resources.Requests.ContainsKey("cpu") && c.Resources.Requests.ContainsKey("memory"), c.Name);
            Assert.True(c.Resources.Limits.ContainsKey("memory"), c.Name);
        }
    }

    [Fact]
    public void EveryContainer_DropsAllCapabilities_IsNotPrivileged_HasAReadOnlyRoot_AndOnlyTheAgentAddsNetAdminAndSysAdmin()
    {
        V1PodSpec pod = DaemonSet().Spec.Template.Spec;
        foreach (V1Container c in pod.Containers.Concat(pod.InitContainers))
        {
            V1SecurityContext sc = c.SecurityContext;
            Assert.Equal(["ALL"], sc.Capabilities.Drop);
            Assert.False(sc.Privileged ?? false, c.Name);
            Assert.False(sc.AllowPrivilegeEscalation ?? true, c.Name);
            Assert.True(sc.ReadOnlyRootFilesystem, c.Name);
        }

        Assert.Equal(["NET_ADMIN", "SYS_ADMIN"], AgentContainer().SecurityContext.Capabilities.Add.Order());
        Assert.Null(Assert.Single(pod.InitContainers).SecurityContext.Capabilities.Add);
        Assert.False(pod.HostPID ?? false);
        Assert.False(pod.HostIPC ?? false);
    }

    [Fact]
    public void Rbac_GrantsExactlyGetListWatchOnPodsServicesNodesAndEndpointSlices_ToTheDaemonSetsServiceAccount()
    {
        IReadOnlyList<object> rbac = KubernetesManifests.ParseFile("rbac.yaml");
        V1ClusterRole role = Assert.Single(rbac.OfType<V1ClusterRole>());
        var granted = role.Rules.SelectMany(r =>
        {
            Assert.Null(r.ResourceNames);
            Assert.Null(r.NonResourceURLs);
            return from g in r.ApiGroups from res in r.Resources from v in r.Verbs select (g, res, v);
        }).ToHashSet();
        var expected = (from x in new[] { ("", "pods"), ("", "services"), ("", "nodes"), ("discovery.k8s.io", "endpointslices") }
                        from v in new[] { "get", "list", "watch" }
                        select (x.Item1, x.Item2, v)).ToHashSet();
        Assert.True(expected.SetEquals(granted), $"granted: {string.Join(", ", granted)}");

        V1ServiceAccount account = Assert.Single(rbac.OfType<V1ServiceAccount>());
        V1ClusterRoleBinding binding = Assert.Single(rbac.OfType<V1ClusterRoleBinding>());
        Assert.Equal(("ClusterRole", role.Metadata.Name), (binding.RoleRef.Kind, binding.RoleRef.Name));
        Rbacv1Subject subject = Assert.Single(binding.Subjects);
        Assert.Equal(("ServiceAccount", account.Metadata.Name, Ns), (subject.Kind, subject.Name, subject.NamespaceProperty));
        Assert.Equal(Ns, account.Metadata.NamespaceProperty);
        Assert.Equal(Ns, Assert.Single(rbac.OfType<V1Namespace>()).Metadata.Name);
        Assert.Equal(account.Metadata.Name, DaemonSet().Spec.Template.Spec.ServiceAccountName);
    }

    // ---- install-cni.sh, for real ----

    [Fact]
    public async Task InstallCni_AppendsTheShimLastToTheBridgeConflist_Once_AndTheResultIsValidCni()
    {
        (string bin, string net) = CniDirs();
        string list = Path.Combine(net, "10-bridge.conflist");
        File.WriteAllText(list, BridgeConflist);
        File.WriteAllText(Path.Combine(net, "20-other.conflist"), OtherConflist);

        CommandResult first = await InstallCniAsync(bin, net);
        Assert.True(first.Succeeded, first.ToString());
        JsonObject chained = await ReadWithJqAsync(list);
        JsonArray plugins = chained["plugins"]!.AsArray();
        Assert.Equal(["bridge", "portmap", "nodemesh-cni"], plugins.Select(p => p!["type"]!.GetValue<string>()));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(BridgeConflist)!["plugins"]![0], plugins[0]), "the bridge plug-in is kept as it was");
        JsonNode shim = plugins[2]!;
        Assert.Equal("/run/nodemesh/agent.sock", shim["agentSocket"]!.GetValue<string>());
        Assert.Equal(["kube-system", Ns], shim["excludeNamespaces"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.Equal("30s", shim["timeout"]!.GetValue<string>());
        Assert.Equal(OtherConflist, File.ReadAllText(Path.Combine(net, "20-other.conflist"))); // only the first is the runtime's
        Assert.Equal(File.ReadAllBytes(ShimBinary), File.ReadAllBytes(Path.Combine(bin, "nodemesh-cni")));
        Assert.True(File.GetUnixFileMode(Path.Combine(bin, "nodemesh-cni")).HasFlag(UnixFileMode.UserExecute | UnixFileMode.OtherExecute));

        // The list's version is one the shim and the bridge plug-in both support (their own VERSION answers).
        string version = chained["cniVersion"]!.GetValue<string>();
        Assert.Contains(version, await SupportedVersionsAsync(Path.Combine(bin, "nodemesh-cni")));
        Assert.Contains(version, await SupportedVersionsAsync("/usr/lib/cni/bridge"));

        // A second run changes nothing: same bytes, same modification time, no file added.
        byte[] before = File.ReadAllBytes(list);
        DateTime written = File.GetLastWriteTimeUtc(list), binWritten = File.GetLastWriteTimeUtc(Path.Combine(bin, "nodemesh-cni"));
        await Task.Delay(20);
        CommandResult second = await InstallCniAsync(bin, net);
        Assert.True(second.Succeeded, second.ToString());
        Assert.Equal(before, File.ReadAllBytes(list));
        Assert.Equal(written, File.GetLastWriteTimeUtc(list));
        Assert.Equal(binWritten, File.GetLastWriteTimeUtc(Path.Combine(bin, "nodemesh-cni")));
        Assert.Equal(["10-bridge.conflist", "20-other.conflist"], Names(net));
        Assert.Equal(["nodemesh-cni"], Names(bin));
    }

    [Fact]
    public async Task InstallCni_ReplacesAnEarlierShimEntry_WithOneLastEntry_AndPicksUpChangedSettings()
    {
        (string bin, string net) = CniDirs();
        string list = Path.Combine(net, "10-bridge.conflist");
        JsonObject stale = JsonNode.Parse(BridgeConflist)!.AsObject();
        stale["plugins"]!.AsArray().Insert(1, JsonNode.Parse("""{"type":"nodemesh-cni","agentSocket":"/old.sock"}"""));
        File.WriteAllText(list, stale.ToJsonString());

        CommandResult result = await InstallCniAsync(bin, net, "AGENT_SOCKET=/run/other/agent.sock");
        Assert.True(result.Succeeded, result.ToString());
        JsonArray plugins = (await ReadWithJqAsync(list))["plugins"]!.AsArray();
        Assert.Equal(["bridge", "portmap", "nodemesh-cni"], plugins.Select(p => p!["type"]!.GetValue<string>()));
        Assert.Equal("/run/other/agent.sock", plugins[2]!["agentSocket"]!.GetValue<string>());
    }

    [Fact]
    public async Task InstallCni_TurnsASingleConfIntoAConflist_EndingInTheShim_AndRemovesTheConf()
    {
        (string bin, string net) = CniDirs();
        File.WriteAllText(Path.Combine(net, "10-bridge.conf"), BridgeConf);

        CommandResult first = await InstallCniAsync(bin, net);
        Assert.True(first.Succeeded, first.ToString());
        Assert.Equal(["10-bridge.conflist"], Names(net));
        string list = Path.Combine(net, "10-bridge.conflist");
        JsonObject chained = await ReadWithJqAsync(list);
        JsonObject conf = JsonNode.Parse(BridgeConf)!.AsObject();
        Assert.Equal(conf["cniVersion"]!.GetValue<string>(), chained["cniVersion"]!.GetValue<string>());
        Assert.Equal(conf["name"]!.GetValue<string>(), chained["name"]!.GetValue<string>());
        JsonArray plugins = chained["plugins"]!.AsArray();
        Assert.Equal(2, plugins.Count);
        conf.Remove("cniVersion");
        conf.Remove("name");
        Assert.True(JsonNode.DeepEquals(conf, plugins[0]), plugins[0]!.ToJsonString());
        Assert.Equal("nodemesh-cni", plugins[1]!["type"]!.GetValue<string>());

        byte[] before = File.ReadAllBytes(list);
        CommandResult second = await InstallCniAsync(bin, net);
        Assert.True(second.Succeeded, second.ToString());
        Assert.Equal(before, File.ReadAllBytes(list));
        Assert.Equal(["10-bridge.conflist"], Names(net));
    }

    [Theory]
    [InlineData(null, "no CNI network configuration in")]
    [InlineData("""{"cniVersion":"1.0.0","name":"x","plugins":[]}""", "has no network plug-in")]
    [InlineData("""{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"nodemesh-cni"}]}""", "has no network plug-in")]
    public async Task InstallCni_WithoutANetworkPlugin_Fails_Saying_So_AndChangesNothing(string? conflist, string message)
    {
        (string bin, string net) = CniDirs();
        if (conflist is not null)
        {
            File.WriteAllText(Path.Combine(net, "10-x.conflist"), conflist);
        }

        CommandResult result = await InstallCniAsync(bin, net);
        Assert.False(result.Succeeded, result.ToString());
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
        Assert.Equal(conflist is null ? [] : ["10-x.conflist"], Names(net));
        if (conflist is not null)
        {
            Assert.Equal(conflist, File.ReadAllText(Path.Combine(net, "10-x.conflist")));
        }

        Assert.DoesNotContain(Names(bin), n => n.StartsWith('.'));
    }

    [Fact]
    public async Task InstallCni_Uninstall_RemovesTheEntry_AndKeepsTheRest()
    {
        (string bin, string net) = CniDirs();
        string list = Path.Combine(net, "10-bridge.conflist");
        File.WriteAllText(list, BridgeConflist);
        Assert.True((await InstallCniAsync(bin, net)).Succeeded);

        CommandResult result = await InstallCniAsync(bin, net, "uninstall");
        Assert.True(result.Succeeded, result.ToString());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(BridgeConflist), await ReadWithJqAsync(list)));
        Assert.Equal(["10-bridge.conflist"], Names(net));
    }

    // ---- Helpers ----

    private static V1DaemonSet DaemonSet() => KubernetesManifests.Single<V1DaemonSet>("daemonset.yaml");

    private static V1Container AgentContainer() => Assert.Single(DaemonSet().Spec.Template.Spec.Containers, c => c.Name == "agent");

    private static IEnumerable<(string, V1Probe?)> Probes(V1Container c) =>
        [("startupProbe", c.StartupProbe), ("livenessProbe", c.LivenessProbe), ("readinessProbe", c.ReadinessProbe)];

    private static string ConfigMapJson() => KubernetesManifests.Single<V1ConfigMap>("configmap.yaml").Data["config.json"];

    /// <summary>The ConfigMap's configuration through the agent's own parser and validator, with a node (node-config.sh adds it) and without discovery.</summary>
    private static AgentConfig ConfigMapConfigWithoutDiscovery()
    {
        JsonObject json = JsonNode.Parse(ConfigMapJson())!.AsObject();
        Assert.False(json.ContainsKey("node"), "the ConfigMap names no node: node-config.sh adds this node's");
        json["node"] = new JsonObject { ["name"] = "node-a", ["address"] = "10.0.0.1" };
        json.Remove("discovery");
        return ConfigLoader.Parse(json.ToJsonString(), "configmap.yaml config.json");
    }

    private static string NodeConfigScript => Path.Combine(KubernetesManifests.Directory, "node-config.sh");

    private async Task<string> RenderNodeConfigAsync(string node, string address)
    {
        string template = Path.Combine(_temp, "template.json"), output = Path.Combine(_temp, "config.json");
        File.WriteAllText(template, ConfigMapJson());
        CommandResult result = await Command.RunAsync("env", $"NODE_NAME={node}", $"NODE_IP={address}", "sh", NodeConfigScript, template, output);
        Assert.True(result.Succeeded, result.ToString());
        Assert.Equal(["config.json", "template.json"], Directory.GetFiles(_temp).Select(Path.GetFileName).Order());
        return output;
    }

    private static V1VolumeMount Mount(V1Container c, string path) =>
        Assert.Single(c.VolumeMounts, m => m.MountPath == path);

    private static V1Volume Volume(V1PodSpec pod, string name) => Assert.Single(pod.Volumes, v => v.Name == name);

    private static void AssertHostPath(V1PodSpec pod, V1Container c, string mountPath, string hostPath)
    {
        V1VolumeMount mount = Mount(c, mountPath);
        Assert.NotEqual(true, mount.ReadOnlyProperty);
        V1HostPathVolumeSource host = Volume(pod, mount.Name).HostPath;
        Assert.NotNull(host);
        Assert.Equal((hostPath, "DirectoryOrCreate"), (host.Path, host.Type));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private (string Bin, string Net) CniDirs()
    {
        string bin = Path.Combine(_temp, "opt-cni-bin"), net = Path.Combine(_temp, "etc-cni-net.d");
        Directory.CreateDirectory(bin);
        Directory.CreateDirectory(net);
        return (bin, net);
    }

    private static string ShimBinary => Path.Combine(Path.GetDirectoryName(TestPaths.NodeMesh)!, "nodemesh-cni");

    /// <summary>install-cni.sh under POSIX sh (dash), as the initContainer runs it, with these directories; no temporary file may be left.</summary>
    private static async Task<CommandResult> InstallCniAsync(string bin, string net, params string[] extra)
    {
        string[] env = extra.Where(a => a.Contains('=')).ToArray();
        string[] args = extra.Where(a => !a.Contains('=')).ToArray();
        CommandResult result = await Command.RunAsync("env",
            [$"CNI_BIN_DIR={bin}", $"CNI_NET_DIR={net}", $"NODEMESH_CNI_BIN={ShimBinary}", .. env, "sh", Path.Combine(KubernetesManifests.Directory, "install-cni.sh"), .. args]);
        Assert.DoesNotContain(Names(net).Concat(Names(bin)), n => n.StartsWith('.') || n.EndsWith(".tmp", StringComparison.Ordinal));
        return result;
    }

    private static string[] Names(string dir) => Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    /// <summary>The file as jq reads it (jq must accept it), then as JSON here.</summary>
    private static async Task<JsonObject> ReadWithJqAsync(string path)
    {
        CommandResult jq = await Command.RunAsync("jq", "-c", ".", path);
        Assert.True(jq.Succeeded, jq.ToString());
        return JsonNode.Parse(jq.Stdout)!.AsObject();
    }

    private static async Task<string[]> SupportedVersionsAsync(string plugin)
    {
        CommandResult version = await Command.RunAsync("env", "CNI_COMMAND=VERSION", plugin);
        Assert.True(version.Succeeded, version.ToString());
        using JsonDocument answer = JsonDocument.Parse(version.Stdout);
        return answer.RootElement.GetProperty("supportedVersions").EnumerateArray().Select(v => v.GetString()!).ToArray();
    }

    // A node's bridge network as the CNI reference plug-ins (Debian's containernetworking-plugins) configure it:
    // bridge with host-local addresses, then portmap.
    private const string BridgeConflist = """
        {
          "cniVersion": "1.0.0",
          "name": "bridge",
          "plugins": [
            {
              "type": "bridge",
              "bridge": "cni0",
              "isGateway": true,
              "ipMasq": true,
              "hairpinMode": true,
              "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.88.0.0/16" }]], "routes": [{ "dst": "0.0.0.0/0" }] }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
          ]
        }
        """;

    private const string OtherConflist = """{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"macvlan","master":"eth0"}]}""";

    private const string BridgeConf = """
        { "cniVersion": "0.4.0", "name": "mynet", "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
          "ipam": { "type": "host-local", "subnet": "10.22.0.0/16", "routes": [{ "dst": "0.0.0.0/0" }] } }
        """;

    private sealed class StubAgentState : IAgentState
    {
        public IReadOnlyList<string> Missing { get; set; } = [];

        public Task<ApiResponse> QueryAsync(string command, CancellationToken cancellationToken) => Task.FromResult(new ApiResponse { Ok = true });

        public IReadOnlyList<CertificateView> Certificates() => [];

        public IReadOnlyList<PolicyView> Policies() => [];

        public IReadOnlyList<string> NotReady() => Missing;

        public string ConfigJson() => "{}";
    }
}
