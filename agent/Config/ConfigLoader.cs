using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using NodeMesh.Identity;

namespace NodeMesh.Config;

/// <summary>Reads the configuration file and validates it, collecting every error with its field path.</summary>
internal static partial class ConfigLoader
{
    public static AgentConfig Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(path, [$"cannot read the file: {ex.Message}"]);
        }

        return Parse(text, path);
    }

    public static AgentConfig Parse(string json, string source)
    {
        AgentConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(json, ConfigJsonContext.Default.AgentConfig);
        }
        catch (JsonException ex)
        {
            // The serializer names the JSON path and position; keep that, drop the type names.
            string path = ex.Path?.TrimStart('$').TrimStart('.') ?? "";
            if (path.Length > 0 && !char.IsAsciiLetterOrDigit(path[0]) && path[0] != '[')
            {
                // A top-level key such as ":x" would read as an empty path; bracket it as the serializer does others.
                path = $"['{path}']";
            }

            string where = path.Length == 0 ? "" : $"{path}: ";
            string position = ex.LineNumber is long line ? $" (line {line + 1}, column {ex.BytePositionInLine + 1})" : "";
            throw new ConfigException(source, [$"{where}{Simplify(ex.Message)}{position}"]);
        }

        if (config is null)
        {
            throw new ConfigException(source, ["the file is empty or 'null'; expected a JSON object"]);
        }

        List<string> errors = ApplyOlderKeys(config);
        errors.AddRange(Validate(config));
        if (errors.Count > 0)
        {
            throw new ConfigException(source, errors);
        }

        return config;
    }

    public static IReadOnlyList<string> Validate(AgentConfig c)
    {
        var errors = new List<string>();
        foreach ((string name, object? section) in new (string, object?)[]
        {
            ("node", c.Node), ("ca", c.Ca), ("certificates", c.Certificates), ("ports", c.Ports), ("tunnel", c.Tunnel), ("telemetry", c.Telemetry), ("logging", c.Logging), ("trustDomain", c.TrustDomain),
            ("stateDir", c.StateDir), ("apiSocket", c.ApiSocket), ("api", c.Api), ("workloads", c.Workloads), ("nodes", c.Nodes), ("remoteWorkloads", c.RemoteWorkloads),
            ("discovery", c.Discovery), ("mesh", c.Mesh), ("services", c.Services), ("gateway", c.Gateway),
        })
        {
            if (section is null)
            {
                errors.Add($"{name}: must not be null");
            }
        }

        if (errors.Count > 0)
        {
            return errors;
        }

        for (int i = 0; i < c.Workloads.Count; i++)
        {
            if (c.Workloads[i] is null)
            {
                errors.Add($"workloads[{i}]: must be an object, not null");
            }
        }

        for (int i = 0; i < c.Nodes.Count; i++)
        {
            if (c.Nodes[i] is null)
            {
                errors.Add($"nodes[{i}]: must be an object, not null");
            }
        }

        for (int i = 0; i < c.RemoteWorkloads.Count; i++)
        {
            if (c.RemoteWorkloads[i] is null)
            {
                errors.Add($"remoteWorkloads[{i}]: must be an object, not null");
            }
        }

        if (errors.Count > 0)
        {
            return errors;
        }

        RequireName(errors, "node.name", c.Node.Name);
        RequireIPv4(errors, "node.address", c.Node.Address);
        if (!SpiffeId.IsTrustDomain(c.TrustDomain))
        {
            errors.Add($"trustDomain: '{SpiffeId.Printable(c.TrustDomain)}' must be 1-255 characters of a-z, 0-9, '.', '-', '_'");
        }

        RequireAbsolutePath(errors, "ca.dir", c.Ca.Dir);
        if (c.Ca.NodeIdentities is null)
        {
            errors.Add("ca.nodeIdentities: must not be null");
        }
        else
        {
            foreach ((string node, IReadOnlyList<string>? entries) in c.Ca.NodeIdentities)
            {
                RequireName(errors, $"ca.nodeIdentities.{SpiffeId.Printable(node)}", node);
                for (int i = 0; i < (entries?.Count ?? 0); i++)
                {
                    if (NodeIdentityAllowList.Problem(entries![i], c.TrustDomain) is { } problem)
                    {
                        errors.Add($"ca.nodeIdentities.{SpiffeId.Printable(node)}[{i}]: {problem}");
                    }
                }
            }
        }

        for (int i = 0; i < (c.Ca.GatewayNodes?.Count ?? 0); i++)
        {
            if (c.Ca.GatewayNodes![i] != "*")
            {
                RequireName(errors, $"ca.gatewayNodes[{i}]", c.Ca.GatewayNodes[i]);
            }
        }

        RequireDuration(errors, "ca.certificateTtl", c.Ca.CertificateTtl, MinCertificateLifetime, MaxCertificateLifetime);
        RequireDuration(errors, "ca.nodeCertificateTtl", c.Ca.NodeCertificateTtl, MinCertificateLifetime, MaxCertificateLifetime);
        ValidateCertificates(errors, c);

        RequireAbsolutePath(errors, "stateDir", c.StateDir);
        RequireAbsolutePath(errors, "apiSocket", c.ApiSocket);
        if (!Api.ApiAccess.IsGroupName(c.Api.Group))
        {
            errors.Add($"api.group: '{Contracts.Printable.Of(c.Api.Group ?? "null")}' must be empty (root only), a group name (a-z, 0-9, '_', '-', up to 32) or a group id");
        }
        RequirePort(errors, "ports.outbound", c.Ports.Outbound);
        RequirePort(errors, "ports.inboundPlaintext", c.Ports.InboundPlaintext);
        RequirePort(errors, "ports.tunnel", c.Ports.Tunnel);
        if (new HashSet<int> { c.Ports.Outbound, c.Ports.InboundPlaintext, c.Ports.Tunnel }.Count != 3)
        {
            errors.Add("ports: outbound, inboundPlaintext and tunnel must be three different ports");
        }

        var taken = new Dictionary<int, string> { [c.Ports.Outbound] = "outbound", [c.Ports.InboundPlaintext] = "inboundPlaintext", [c.Ports.Tunnel] = "tunnel" };
        foreach ((string name, int port) in new[] { ("metrics", c.Ports.Metrics), ("admin", c.Ports.Admin), ("readiness", c.Ports.Readiness) })
        {
            if (port == 0)
            {
                continue;
            }

            RequirePort(errors, $"ports.{name}", port);
            if (!taken.TryAdd(port, name))
            {
                errors.Add($"ports.{name}: {port} is already ports.{taken[port]}");
            }
        }

        ValidateTelemetry(errors, c.Telemetry);
        ValidateDiscovery(errors, c);
        ValidateGateway(errors, c, taken);

        RequireRange(errors, "tunnel.maxStreamsPerConnection", c.Tunnel.MaxStreamsPerConnection, 1, 10_000);
        RequireRange(errors, "tunnel.maxConnectionsPerPeer", c.Tunnel.MaxConnectionsPerPeer, 1, 1_000);
        RequireDuration(errors, "tunnel.idleTimeout", c.Tunnel.IdleTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1));
        RequireDuration(errors, "tunnel.connectTimeout", c.Tunnel.ConnectTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
        RequireDuration(errors, "tunnel.keepaliveInterval", c.Tunnel.KeepaliveInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
        RequireDuration(errors, "tunnel.keepaliveTimeout", c.Tunnel.KeepaliveTimeout, TimeSpan.FromMilliseconds(200), TimeSpan.FromHours(1));
        if (c.Tunnel.KeepaliveTimeout <= c.Tunnel.KeepaliveInterval)
        {
            errors.Add("tunnel.keepaliveTimeout: must be longer than tunnel.keepaliveInterval");
        }

        RequireDuration(errors, "drainTimeout", c.DrainTimeout, TimeSpan.Zero, TimeSpan.FromHours(1));

        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var ips = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < c.Workloads.Count; i++)
        {
            WorkloadConfig w = c.Workloads[i];
            string at = $"workloads[{i}]";
            foreach (string error in WorkloadErrors(w.Name, w.Ip, w.Identity, w.Netns ?? "", c.TrustDomain))
            {
                errors.Add($"{at}.{error}");
            }

            Unique(errors, names, w.Name, $"{at}.name", "workload name");
            Unique(errors, ips, w.Ip, $"{at}.ip", "workload ip");
            foreach (string error in WorkloadPolicyErrors(w.Mode, w.Labels, labelsRequired: true))
            {
                errors.Add($"{at}.{error}");
            }
        }

        var nodeNames = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < c.Nodes.Count; i++)
        {
            PeerNodeConfig n = c.Nodes[i];
            RequireName(errors, $"nodes[{i}].name", n.Name);
            RequireIPv4(errors, $"nodes[{i}].address", n.Address);
            if (n.Name == c.Node.Name)
            {
                errors.Add($"nodes[{i}].name: '{n.Name}' is this node (node.name); list only the other nodes");
            }
            else if (!nodeNames.Add(n.Name))
            {
                errors.Add($"nodes[{i}].name: node '{n.Name}' is listed twice");
            }
        }

        for (int i = 0; i < c.RemoteWorkloads.Count; i++)
        {
            RemoteWorkloadConfig w = c.RemoteWorkloads[i];
            string at = $"remoteWorkloads[{i}]";
            foreach (string error in WorkloadErrors(w.Name, w.Ip, w.Identity, netns: null, c.TrustDomain))
            {
                errors.Add($"{at}.{error}");
            }

            if (!nodeNames.Contains(w.Node))
            {
                errors.Add(IsMissing(w.Node) ? $"{at}.node: missing (it must be one of the nodes listed in 'nodes')" : $"{at}.node: '{SpiffeId.Printable(w.Node!)}' is not one of the nodes listed in 'nodes'");
            }

            Unique(errors, names, w.Name, $"{at}.name", "workload name");
            Unique(errors, ips, w.Ip, $"{at}.ip", "workload ip");
        }

        ValidateServices(errors, c, ips);

        if (c.Policies is null)
        {
            errors.Add("policies: must not be null");
        }
        else
        {
            _ = Authz.PolicyCompiler.Compile(c.Policies, c.TrustDomain, errors);
        }

        return errors;
    }

    private static void ValidateServices(List<string> errors, AgentConfig c, Dictionary<string, string> workloadIps)
    {
        if (c.Services is null)
        {
            errors.Add("services: must not be null");
            return;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var addresses = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < c.Services.Count; i++)
        {
            string at = $"services[{i}]";
            if (c.Services[i] is not { } service)
            {
                errors.Add($"{at}: must be an object, not null");
                continue;
            }

            RequireName(errors, $"{at}.name", service.Name);
            if (!string.IsNullOrEmpty(service.Name) && !names.Add(service.Name))
            {
                errors.Add($"{at}.name: service '{service.Name}' is listed twice");
            }

            if (service.Addresses is not { Count: > 0 })
            {
                errors.Add($"{at}.addresses: at least one virtual IPv4 address is needed");
            }
            else
            {
                for (int j = 0; j < service.Addresses.Count; j++)
                {
                    string path = $"{at}.addresses[{j}]";
                    RequireIPv4(errors, path, service.Addresses[j]);
                    if (service.Addresses[j] is { } address && workloadIps.TryGetValue(address, out string? workload))
                    {
                        errors.Add($"{path}: {address} is already {workload}");
                    }
                    else if (service.Addresses[j] is { } taken && !addresses.TryAdd(taken, path))
                    {
                        errors.Add($"{path}: {taken} is already {addresses[taken]}");
                    }
                }
            }

            if (service.Ports is not { Count: > 0 })
            {
                errors.Add($"{at}.ports: at least one port is needed");
            }
            else
            {
                for (int j = 0; j < service.Ports.Count; j++)
                {
                    RequirePort(errors, $"{at}.ports[{j}].port", service.Ports[j]?.Port ?? 0);
                    if (service.Ports[j] is { TargetPort: not 0 } target)
                    {
                        RequirePort(errors, $"{at}.ports[{j}].targetPort", target.TargetPort);
                    }
                }
            }

            for (int j = 0; j < (service.Endpoints?.Count ?? 0); j++)
            {
                RequireName(errors, $"{at}.endpoints[{j}]", service.Endpoints![j]);
            }
        }
    }

    /// <summary>The services of the config file, as the registry holds them (after validation).</summary>
    public static IReadOnlyList<State.MeshService> Services(AgentConfig c) =>
        [.. c.Services.Select(s => new State.MeshService(s.Name, [.. s.Addresses.Select(IPAddress.Parse)],
            [.. s.Ports.Select(p => new State.ServicePort(p.Port, p.TargetPort == 0 ? p.Port : p.TargetPort))], s.Endpoints))];

    private static void ValidateDiscovery(List<string> errors, AgentConfig c)
    {
        if (c.Discovery.Etcd is null || c.Discovery.Kubernetes is null)
        {
            errors.Add($"discovery.{(c.Discovery.Etcd is null ? "etcd" : "kubernetes")}: must not be null");
            return;
        }

        if (c.Mesh.Cidrs is null)
        {
            errors.Add("mesh.cidrs: must not be null");
        }
        else
        {
            for (int i = 0; i < c.Mesh.Cidrs.Count; i++)
            {
                if (c.Mesh.Cidrs[i].BaseAddress.AddressFamily != AddressFamily.InterNetwork)
                {
                    errors.Add($"mesh.cidrs[{i}]: {c.Mesh.Cidrs[i]} is not IPv4 (mesh addresses are IPv4)");
                }
            }
        }

        RequireDuration(errors, "mesh.holdTimeout", c.Mesh.HoldTimeout, TimeSpan.Zero, TimeSpan.FromSeconds(30));
        if (c.Discovery.Source == DiscoverySource.Kubernetes)
        {
            if (c.Nodes.Count > 0 || c.RemoteWorkloads.Count > 0)
            {
                errors.Add("nodes, remoteWorkloads: must be empty with discovery.source kubernetes (the API server places every pod)");
            }

            ValidateKubernetes(errors, c.Discovery.Kubernetes);
            return;
        }

        if (c.Discovery.Source != DiscoverySource.Etcd)
        {
            return;
        }

        if (c.Nodes.Count > 0 || c.RemoteWorkloads.Count > 0)
        {
            errors.Add("nodes, remoteWorkloads: must be empty with discovery.source etcd (every node publishes its own there)");
        }

        EtcdConfig e = c.Discovery.Etcd;
        if (e.Endpoints is null || e.Endpoints.Count == 0)
        {
            errors.Add("discovery.etcd.endpoints: at least one etcd client URL is needed with discovery.source etcd, e.g. [\"https://10.0.0.1:2379\"]");
        }
        else
        {
            for (int i = 0; i < e.Endpoints.Count; i++)
            {
                Uri? url = e.Endpoints[i];
                if (url is null || !url.IsAbsoluteUri || url.Scheme is not ("http" or "https") || url.Host.Length == 0 || url.AbsolutePath != "/")
                {
                    errors.Add($"discovery.etcd.endpoints[{i}]: '{Contracts.Printable.Of(url?.OriginalString ?? "null")}' must be an http:// or https:// URL of a member, e.g. https://10.0.0.1:2379");
                }
            }

            if (e.Endpoints.Where(u => u is { IsAbsoluteUri: true }).Select(u => u.Scheme).Distinct().Count() > 1)
            {
                errors.Add("discovery.etcd.endpoints: all must be http:// or all https://");
            }
        }

        if (e.Prefix is null || !e.Prefix.StartsWith('/') || !e.Prefix.EndsWith('/') || e.Prefix.Length > 200 || e.Prefix.Any(ch => ch <= ' ' || ch > '~'))
        {
            errors.Add($"discovery.etcd.prefix: '{Contracts.Printable.Of(e.Prefix ?? "null")}' must start and end with '/' (printable ASCII, no spaces), e.g. /nodemesh/");
        }

        if (!string.IsNullOrEmpty(e.Username) && string.IsNullOrEmpty(e.PasswordFile))
        {
            errors.Add("discovery.etcd.passwordFile: needed with discovery.etcd.username");
        }

        foreach ((string name, string? file) in new[] { ("passwordFile", e.PasswordFile), ("caFile", e.CaFile), ("certFile", e.CertFile), ("keyFile", e.KeyFile) })
        {
            if (!string.IsNullOrEmpty(file))
            {
                RequireAbsolutePath(errors, $"discovery.etcd.{name}", file);
            }
        }

        if (string.IsNullOrEmpty(e.CertFile) != string.IsNullOrEmpty(e.KeyFile))
        {
            errors.Add("discovery.etcd.certFile, keyFile: give both or neither");
        }

        RequireDuration(errors, "discovery.etcd.leaseTtl", e.LeaseTtl, TimeSpan.FromSeconds(2), TimeSpan.FromHours(1));
        RequireDuration(errors, "discovery.etcd.dialTimeout", e.DialTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1));
        RequireDuration(errors, "discovery.etcd.requestTimeout", e.RequestTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
    }

    private static void ValidateKubernetes(List<string> errors, KubernetesConfig k)
    {
        if (!string.IsNullOrEmpty(k.Kubeconfig))
        {
            RequireAbsolutePath(errors, "discovery.kubernetes.kubeconfig", k.Kubeconfig);
        }

        if (!string.IsNullOrEmpty(k.NodeName))
        {
            RequireName(errors, "discovery.kubernetes.nodeName", k.NodeName);
        }

        if (k.ExcludeNamespaces is null)
        {
            errors.Add("discovery.kubernetes.excludeNamespaces: must be a list, not null (empty: none excluded)");
        }
        else
        {
            for (int i = 0; i < k.ExcludeNamespaces.Count; i++)
            {
                // A namespace is a DNS label: 1-63 of a-z, 0-9, '-'.
                string? ns = k.ExcludeNamespaces[i];
                if (ns is null || ns.Length is 0 or > 63 || !char.IsAsciiLetterOrDigit(ns[0]) || ns.Any(ch => !(char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch) || ch == '-')))
                {
                    errors.Add(MustBe($"discovery.kubernetes.excludeNamespaces[{i}]", ns, "a namespace name (1-63 characters of a-z, 0-9, '-')"));
                }
            }
        }

        RequireAbsolutePath(errors, "discovery.kubernetes.netnsDirectory", k.NetnsDirectory);
        RequireRange(errors, "discovery.kubernetes.pageSize", k.PageSize, 1, 10_000);
        RequireDuration(errors, "discovery.kubernetes.requestTimeout", k.RequestTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5));
        RequireDuration(errors, "discovery.kubernetes.watchTimeout", k.WatchTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1));
        RequireDuration(errors, "discovery.kubernetes.initialBackoff", k.InitialBackoff, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(1));
        RequireDuration(errors, "discovery.kubernetes.maxBackoff", k.MaxBackoff, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(10));
        if (k.MaxBackoff < k.InitialBackoff)
        {
            errors.Add("discovery.kubernetes.maxBackoff: must not be shorter than discovery.kubernetes.initialBackoff");
        }
    }

    private static void ValidateTelemetry(List<string> errors, TelemetryConfig t)
    {
        if (t.Otlp is null)
        {
            errors.Add("telemetry.otlp: must not be null");
            return;
        }

        if (!string.IsNullOrEmpty(t.Otlp.Endpoint)
            && !(Uri.TryCreate(t.Otlp.Endpoint, UriKind.Absolute, out Uri? endpoint) && endpoint.Scheme is "http" or "https" && endpoint.Host.Length > 0))
        {
            errors.Add($"telemetry.otlp.endpoint: '{Contracts.Printable.Of(t.Otlp.Endpoint)}' must be an http:// or https:// URL, e.g. http://10.0.0.5:4317");
        }

        if (t.Otlp.ExportInterval is { } interval)
        {
            RequireDuration(errors, "telemetry.otlp.exportInterval", interval, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
        }
    }

    private static void ValidateCertificates(List<string> errors, AgentConfig c)
    {
        switch (c.Ca.Role)
        {
            case "none":
                break;
            case "server":
                if (!IsIPv4EndPoint(c.Ca.Listen))
                {
                    errors.Add($"ca.listen: '{Contracts.Printable.Of(c.Ca.Listen ?? "")}' must be address:port (IPv4), e.g. 10.231.0.1:15012");
                }

                if (c.Certificates.Source != "embedded")
                {
                    errors.Add("ca.role: an agent serving the CA signs its own certificates: certificates.source must be \"embedded\"");
                }

                break;
            default:
                errors.Add($"ca.role: '{Contracts.Printable.Of(c.Ca.Role ?? "")}' must be \"none\" or \"server\"");
                break;
        }

        switch (c.Certificates.Source)
        {
            case "embedded":
                break;
            case "ca":
                if (!IsIPv4EndPoint(c.Ca.Server))
                {
                    errors.Add($"ca.server: '{Contracts.Printable.Of(c.Ca.Server ?? "")}' must be address:port (IPv4) of the CA service");
                }

                RequireAbsolutePath(errors, "ca.trustBundle", c.Ca.TrustBundle);
                RequireAbsolutePath(errors, "ca.joinTokenFile", c.Ca.JoinTokenFile);
                break;
            case "files":
                RequireAbsolutePath(errors, "certificates.dir", c.Certificates.Dir);
                RequireDuration(errors, "certificates.pollInterval", c.Certificates.PollInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
                break;
            default:
                errors.Add($"certificates.source: '{Contracts.Printable.Of(c.Certificates.Source ?? "")}' must be \"embedded\", \"ca\" or \"files\"");
                break;
        }
    }

    private static readonly TimeSpan MinCertificateLifetime = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan MaxCertificateLifetime = TimeSpan.FromDays(90);

    private static void RequireDuration(List<string> errors, string path, TimeSpan value, TimeSpan min, TimeSpan max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{path}: {Contracts.Duration.Format(value)} must be between {Contracts.Duration.Format(min)} and {Contracts.Duration.Format(max)}");
        }
    }

    /// <summary>
    /// Maps the older whole-second keys ("tunnel.connectTimeoutSeconds") onto their durations, so files written
    /// for earlier releases still load. A file that gives both forms of one setting is refused: which did it mean?
    /// </summary>
    private static List<string> ApplyOlderKeys(AgentConfig c)
    {
        var errors = new List<string>();
        var defaults = new AgentConfig();
        c.DrainTimeout = Older(errors, "drainTimeout", c.DrainTimeout, defaults.DrainTimeout, "drainSeconds", c.DrainSeconds);
        c.DrainSeconds = null;
        if (c.Certificates is not null)
        {
            c.Certificates.PollInterval = Older(errors, "certificates.pollInterval", c.Certificates.PollInterval, defaults.Certificates.PollInterval,
                "certificates.pollSeconds", c.Certificates.PollSeconds);
            c.Certificates.PollSeconds = null;
        }

        if (c.Tunnel is TunnelConfig t)
        {
            TunnelConfig d = defaults.Tunnel;
            t.IdleTimeout = Older(errors, "tunnel.idleTimeout", t.IdleTimeout, d.IdleTimeout, "tunnel.idleTimeoutSeconds", t.IdleTimeoutSeconds);
            t.ConnectTimeout = Older(errors, "tunnel.connectTimeout", t.ConnectTimeout, d.ConnectTimeout, "tunnel.connectTimeoutSeconds", t.ConnectTimeoutSeconds);
            t.KeepaliveInterval = Older(errors, "tunnel.keepaliveInterval", t.KeepaliveInterval, d.KeepaliveInterval,
                "tunnel.keepaliveIntervalSeconds", t.KeepaliveIntervalSeconds);
            t.KeepaliveTimeout = Older(errors, "tunnel.keepaliveTimeout", t.KeepaliveTimeout, d.KeepaliveTimeout,
                "tunnel.keepaliveTimeoutSeconds", t.KeepaliveTimeoutSeconds);
            t.IdleTimeoutSeconds = t.ConnectTimeoutSeconds = t.KeepaliveIntervalSeconds = t.KeepaliveTimeoutSeconds = null;
        }

        return errors;
    }

    private static TimeSpan Older(List<string> errors, string path, TimeSpan value, TimeSpan defaultValue, string olderPath, int? seconds)
    {
        if (seconds is not int given)
        {
            return value;
        }

        if (value != defaultValue)
        {
            errors.Add($"{olderPath}: give {path} (a duration such as \"{given}s\") or {olderPath}, not both");
            return value;
        }

        if (given is < 0 or > 86_400)
        {
            errors.Add($"{olderPath}: {given} must be between 0 and 86400 (better: {path}, a duration such as \"5s\")");
            return value;
        }

        return TimeSpan.FromSeconds(given);
    }

    public static bool IsIPv4EndPoint(string? value)
    {
        if (value is null)
        {
            return false;
        }

        int colon = value.LastIndexOf(':');
        return colon > 0 && IsIPv4(value[..colon])
            && int.TryParse(value[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port)
            && port is > 0 and <= 65535;
    }

    /// <summary>The policy-related fields of a local workload: its mode and labels.</summary>
    public static IEnumerable<string> WorkloadPolicyErrors(string? mode, IReadOnlyDictionary<string, string>? labels, bool labelsRequired = false)
    {
        if (labels is null && labelsRequired)
        {
            yield return "labels: must be an object, not null";
        }

        if (!TryParseMode(mode, out _))
        {
            yield return $"mode: '{Contracts.Printable.Of(mode ?? "null")}' must be STRICT or PERMISSIVE";
        }

        foreach ((string key, string value) in labels ?? new Dictionary<string, string>())
        {
            if (key.Length is 0 or > 253 || value is null || value.Length > 63
                || !key.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' or '/')
                || !value.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.'))
            {
                yield return $"labels: '{Contracts.Printable.Of(key)}: {Contracts.Printable.Of(value ?? "null")}' is not a valid label (letters, digits, '-', '_', '.')";
            }
        }
    }

    /// <summary>The mode of a workload whose configuration was already validated.</summary>
    public static State.PeerMode ParseMode(string? mode) =>
        TryParseMode(mode, out State.PeerMode parsed) ? parsed : throw new FormatException($"mode '{mode}' must be STRICT or PERMISSIVE");

    public static bool TryParseMode(string? mode, out State.PeerMode parsed)
    {
        (bool ok, parsed) = mode switch
        {
            "STRICT" => (true, State.PeerMode.Strict),
            "PERMISSIVE" or null or "" => (true, State.PeerMode.Permissive),
            _ => (false, State.PeerMode.Permissive),
        };
        return ok;
    }

    /// <summary>Checks one workload's fields (shared by the file and the local API). Errors start with the field name.</summary>
    public static IEnumerable<string> WorkloadErrors(string? name, string? ip, string? identity, string? netns, string trustDomain)
    {
        if (!IsName(name))
        {
            yield return MustBe("name", name, "1-253 characters of a-z, 0-9, '-', '.', starting with a letter or digit");
        }

        if (!IsIPv4(ip))
        {
            yield return IsMissing(ip) ? "ip: missing (it must be an IPv4 address)" : $"ip: '{SpiffeId.Printable(ip!)}' is not an IPv4 address";
        }
        else if (State.WorkloadAddress.Refusal(IPAddress.Parse(ip!)) is { } refusal)
        {
            yield return $"ip: {ip} {refusal}; a workload needs a unicast address of its own";
        }

        if (!SpiffeId.TryParse(identity, out SpiffeId? id, out string? error))
        {
            yield return $"identity: {error}";
        }
        else if (id.TrustDomain != trustDomain)
        {
            yield return $"identity: '{identity}' is in trust domain '{id.TrustDomain}', not this mesh's '{trustDomain}'";
        }
        else if (id.Namespace == Identity.MeshIdentities.Namespace)
        {
            yield return $"identity: namespace '{Identity.MeshIdentities.Namespace}' is reserved for the agents and the CA";
        }

        if (netns is not null && !IsNetnsPath(netns))
        {
            yield return MustBe("netns", netns, "an absolute path such as /var/run/netns/NAME or /proc/PID/ns/net");
        }
    }

    public static bool IsName(string? value)
    {
        if (value is null || value.Length is 0 or > 253 || !char.IsAsciiLetterOrDigit(value[0]))
        {
            return false;
        }

        foreach (char ch in value)
        {
            if (!(char.IsAsciiLetterLower(ch) || char.IsAsciiDigit(ch) || ch is '-' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    public static bool IsIPv4(string? value) =>
        value is not null && value.Length <= 15 && IPAddress.TryParse(value, out IPAddress? a) && a.AddressFamily == AddressFamily.InterNetwork
        && a.ToString() == value;

    private static bool IsNetnsPath(string? value) =>
        value is not null && value.Length is > 1 and <= 4096 && value[0] == '/' && !value.Contains("/../", StringComparison.Ordinal)
        && !value.EndsWith("/..", StringComparison.Ordinal) && value.All(c => !char.IsControl(c));

    /// <summary>A field not given (null or empty): reported as missing, not as a malformed value.</summary>
    private static bool IsMissing(string? value) => string.IsNullOrEmpty(value);

    /// <summary>"PATH: 'VALUE' must be EXPECTED", or "PATH: missing (it must be EXPECTED)" when it was not given.</summary>
    private static string MustBe(string path, string? value, string expected) =>
        IsMissing(value) ? $"{path}: missing (it must be {expected})" : $"{path}: '{SpiffeId.Printable(value!)}' must be {expected}";

    private static void RequireName(List<string> errors, string path, string? value)
    {
        if (!IsName(value))
        {
            errors.Add(MustBe(path, value, "1-253 characters of a-z, 0-9, '-', '.', starting with a letter or digit"));
        }
    }

    private static void RequireIPv4(List<string> errors, string path, string? value)
    {
        if (!IsIPv4(value))
        {
            errors.Add(IsMissing(value) ? $"{path}: missing (it must be an IPv4 address)" : $"{path}: '{SpiffeId.Printable(value!)}' is not an IPv4 address");
        }
    }

    private static void RequireAbsolutePath(List<string> errors, string path, string? value)
    {
        if (!IsNetnsPath(value))
        {
            errors.Add(MustBe(path, value, "an absolute path"));
        }
    }

    private static void RequirePort(List<string> errors, string path, int value) => RequireRange(errors, path, value, 1, 65535);

    private static void RequireRange(List<string> errors, string path, int value, int min, int max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{path}: {value} must be between {min} and {max}");
        }
    }

    private static void Unique(List<string> errors, Dictionary<string, string> seen, string? value, string path, string what)
    {
        if (string.IsNullOrEmpty(value))
        {
            return;
        }

        if (!seen.TryAdd(value, path))
        {
            errors.Add($"{path}: {what} '{SpiffeId.Printable(value)}' is already used by {seen[value]}");
        }
    }

    private static string Simplify(string message)
    {
        // "The JSON property 'x' could not be mapped to any .NET member contained in type 'T'." -> operator words.
        System.Text.RegularExpressions.Match unknown = System.Text.RegularExpressions.Regex.Match(message, "^The JSON property '(?<name>.*)' could not be mapped to any .NET member", System.Text.RegularExpressions.RegexOptions.Singleline);
        if (unknown.Success)
        {
            // The name is the file's, anything at all: quotes included (hence greedy), control characters not printed.
            return $"unknown field '{Contracts.Printable.Of(unknown.Groups["name"].Value)}'";
        }

        // "Duplicate property 'x' encountered during deserialization of type 'T'." -> which field, not which type.
        System.Text.RegularExpressions.Match duplicate = System.Text.RegularExpressions.Regex.Match(message, "^Duplicate property '(?<name>.*)' encountered during deserialization", System.Text.RegularExpressions.RegexOptions.Singleline);
        if (duplicate.Success)
        {
            return $"duplicate field '{Contracts.Printable.Of(duplicate.Groups["name"].Value)}': give each field once";
        }

        // "The JSON value could not be converted to System.Int32." -> what the field takes, not the .NET type.
        System.Text.RegularExpressions.Match converted = System.Text.RegularExpressions.Regex.Match(message, "^The JSON value could not be converted to (?<type>[^ ]+)\\.");
        if (converted.Success)
        {
            return "expected " + ExpectedKind(converted.Groups["type"].Value);
        }

        int pathAt = message.IndexOf(" Path:", StringComparison.Ordinal);
        return pathAt > 0 ? message[..pathAt] : message;
    }

    private static string ExpectedKind(string type) => type switch
    {
        "System.Int32" or "System.Int64" => "a number",
        "System.String" => "a string",
        "System.Boolean" => "true or false",
        _ when type.Contains("Dictionary", StringComparison.Ordinal) => "an object",
        _ when type.Contains("List", StringComparison.Ordinal) => "a list",
        _ => "an object",
    };
}
