using System.Text.Json.Serialization;

namespace NodeMesh.Config;

// The agent's configuration file, as read from JSON. Setters exist for the source-generated reader only
// (it assigns missing init-only members their default, erasing the defaults below); once loaded a
// configuration is never changed: a reload builds a new snapshot. Durations are TimeSpan, written as "5s",
// "250ms", "1m30s" (DurationJsonConverter). The older integer "...Seconds" keys are still read (ConfigLoader
// maps them and refuses a file that gives both forms); they are null unless given, and never written.

/// <summary>The whole configuration file.</summary>
internal sealed record AgentConfig
{
    public NodeConfig Node { get; set; } = new();
    public string TrustDomain { get; set; } = "cluster.local";
    public CaConfig Ca { get; set; } = new();
    public CertificatesConfig Certificates { get; set; } = new();
    public string StateDir { get; set; } = "/var/lib/nodemesh";
    public string ApiSocket { get; set; } = "/run/nodemesh/agent.sock";
    public ApiConfig Api { get; set; } = new();
    public PortsConfig Ports { get; set; } = new();
    public TunnelConfig Tunnel { get; set; } = new();
    public TelemetryConfig Telemetry { get; set; } = new();
    public LoggingConfig Logging { get; set; } = new();
    /// <summary>How long in-flight flows may finish after SIGTERM before they are cut.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Older form of <see cref="DrainTimeout"/>, in whole seconds.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DrainSeconds { get; set; }
    public IReadOnlyList<WorkloadConfig> Workloads { get; set; } = [];
    public IReadOnlyList<PeerNodeConfig> Nodes { get; set; } = [];
    public IReadOnlyList<RemoteWorkloadConfig> RemoteWorkloads { get; set; } = [];

    /// <summary>L4 authorization policies, enforced by the receiving agent; reloaded when the file changes.</summary>
    public IReadOnlyList<Authz.PolicyConfig> Policies { get; set; } = [];

    /// <summary>Services: virtual addresses whose flows are balanced over endpoint workloads (with etcd, besides those under PREFIX/services/).</summary>
    public IReadOnlyList<ServiceConfig> Services { get; set; } = [];

    /// <summary>Where the agent learns the mesh's nodes and workloads besides its own.</summary>
    public DiscoveryConfig Discovery { get; set; } = new();

    /// <summary>What belongs to the mesh: traffic there is never sent in plaintext.</summary>
    public MeshConfig Mesh { get; set; } = new();

    /// <summary>The edge listener (API gateway) in front of the mesh; no listeners: none.</summary>
    public Gateway.GatewayConfig Gateway { get; set; } = new();
}

/// <summary>Where the registry of nodes and workloads comes from.</summary>
internal enum DiscoverySource
{
    /// <summary>This file: nodes and remoteWorkloads.</summary>
    Static,

    /// <summary>etcd: each agent publishes its node and workloads under a lease and watches everyone's.</summary>
    Etcd,

    /// <summary>The Kubernetes API server: pods, services, endpoint slices and nodes, listed and watched.</summary>
    Kubernetes,
}

internal sealed record DiscoveryConfig
{
    public DiscoverySource Source { get; set; } = DiscoverySource.Static;

    public EtcdConfig Etcd { get; set; } = new();

    public KubernetesConfig Kubernetes { get; set; } = new();
}

/// <summary>The API server of source "kubernetes": in the cluster (the pod's service account) or through a kubeconfig file.</summary>
internal sealed record KubernetesConfig
{
    /// <summary>A kubeconfig file (its current context); empty: in-cluster (service-account token and CA, KUBERNETES_SERVICE_HOST/PORT).</summary>
    public string Kubeconfig { get; set; } = "";

    /// <summary>This node's name in the cluster (spec.nodeName of its pods); empty: node.name.</summary>
    public string NodeName { get; set; } = "";

    /// <summary>Pods in these namespaces are never mesh workloads (the cluster's own machinery).</summary>
    public IReadOnlyList<string> ExcludeNamespaces { get; set; } = ["kube-system"];

    /// <summary>Where the container runtime keeps the pods' network namespaces (containerd and CRI-O: /var/run/netns); the start-up reconcile looks there for pods left uncaptured.</summary>
    public string NetnsDirectory { get; set; } = "/var/run/netns";

    /// <summary>The deadline of one list request (each page).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>A watch is ended by the server after this (timeoutSeconds) and resumed from its last resourceVersion.</summary>
    public TimeSpan WatchTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Objects per list page (limit); the rest follow with continue.</summary>
    public int PageSize { get; set; } = 500;

    /// <summary>The first wait after a failed list or watch, doubled while failures go on, up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>The etcd cluster of source "etcd".</summary>
internal sealed record EtcdConfig
{
    /// <summary>Client URLs of the members (all http:// or all https://).</summary>
    public IReadOnlyList<Uri> Endpoints { get; set; } = [];

    /// <summary>Every key of the mesh starts with it; each node writes under PREFIX/nodes/NODE/.</summary>
    public string Prefix { get; set; } = "/nodemesh/";

    /// <summary>etcd user (etcd's own authentication); empty: none.</summary>
    public string Username { get; set; } = "";

    /// <summary>File holding the user's password.</summary>
    public string PasswordFile { get; set; } = "";

    /// <summary>PEM files for https endpoints: the members' CA, and this node's client certificate and key (optional).</summary>
    public string CaFile { get; set; } = "";

    public string CertFile { get; set; } = "";

    public string KeyFile { get; set; } = "";

    /// <summary>This node's entries expire this long after its agent stops renewing them (a crash, a partition).</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);

    public TimeSpan DialTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>The deadline of one call (a listing, a put).</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(5);
}

internal sealed record MeshConfig
{
    /// <summary>
    /// Address ranges that belong to the mesh. A flow to an address in them that the registry does not know is
    /// held for up to <see cref="HoldTimeout"/> for the registry to learn it, then refused: never passed through
    /// in plaintext.
    /// </summary>
    public IReadOnlyList<System.Net.IPNetwork> Cidrs { get; set; } = [];

    public TimeSpan HoldTimeout { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>This node: its name and the address peers reach its tunnel listener on.</summary>
internal sealed record NodeConfig
{
    public string Name { get; set; } = "";
    public string Address { get; set; } = "";
}

/// <summary>The mesh CA: its directory (for the embedded source or the CA role), or where to reach it.</summary>
internal sealed record CaConfig
{
    /// <summary>The CA directory made by <c>nodemesh ca init</c> (embedded source, or role "server").</summary>
    public string Dir { get; set; } = "/var/lib/nodemesh/ca";

    /// <summary>Lifetime of workload certificates ("24h", "30m", "90s"); they are renewed at about half-life.</summary>
    public TimeSpan CertificateTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Lifetime of node certificates the CA service issues to joined nodes.</summary>
    public TimeSpan NodeCertificateTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>"none", or "server": this agent also serves certificate signing requests from other nodes.</summary>
    public string Role { get; set; } = "none";

    /// <summary>Where the CA service listens (role "server"), as address:port.</summary>
    public string Listen { get; set; } = "";

    /// <summary>The CA service to join and get certificates from (certificates.source "ca"), as address:port.</summary>
    public string Server { get; set; } = "";

    /// <summary>PEM file with the CA root(s) a joining node trusts before it has anything else.</summary>
    public string TrustBundle { get; set; } = "";

    /// <summary>File holding this node's join token (from <c>nodemesh ca token create</c>).</summary>
    public string JoinTokenFile { get; set; } = "";

    /// <summary>
    /// Role "server": per node name, the only workload identities the CA issues to that node, each an exact SPIFFE
    /// id or a path prefix ending in "/*" (<c>spiffe://td/ns/shop/*</c>). A node not listed is limited by the
    /// registry's placement alone.
    /// </summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> NodeIdentities { get; set; } = new Dictionary<string, IReadOnlyList<string>>();

    /// <summary>
    /// Role "server": the nodes that may be issued the gateway's identity (this file's <c>gateway.identity</c>, by
    /// default <c>spiffe://TRUST_DOMAIN/ns/nodemesh-system/sa/gateway</c>), which no workload holds; "*": every node.
    /// </summary>
    public IReadOnlyList<string> GatewayNodes { get; set; } = [];
}

/// <summary>Where this agent's certificates come from.</summary>
internal sealed record CertificatesConfig
{
    /// <summary>"embedded" (signed locally by the CA in ca.dir), "ca" (the CA service), or "files".</summary>
    public string Source { get; set; } = "embedded";

    /// <summary>Directory an external issuer keeps fresh (source "files").</summary>
    public string Dir { get; set; } = "";

    /// <summary>How often the directory is looked at for renewed files (source "files").</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Older form of <see cref="PollInterval"/>, in whole seconds.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? PollSeconds { get; set; }
}

/// <summary>Who may use the local API socket besides root.</summary>
internal sealed record ApiConfig
{
    /// <summary>A group (name or number) whose members may use the local API; empty: root only.</summary>
    public string Group { get; set; } = "";
}

internal sealed record PortsConfig
{
    public int Outbound { get; set; } = 15001;
    public int InboundPlaintext { get; set; } = 15006;
    public int Tunnel { get; set; } = 15008;

    /// <summary>Prometheus metrics (<c>/metrics</c>, <c>/stats/prometheus</c>) on every address of the node; 0 turns them off.</summary>
    public int Metrics { get; set; } = 15020;

    /// <summary>The admin API and status page, on 127.0.0.1 only; 0 turns them off.</summary>
    public int Admin { get; set; } = 15000;

    /// <summary>Readiness (<c>/healthz/ready</c>) and liveness (<c>/healthz/live</c>) on every address; 0 turns them off.</summary>
    public int Readiness { get; set; } = 15021;
}

/// <summary>How OTLP export is carried (OTEL_EXPORTER_OTLP_PROTOCOL's <c>grpc</c> and <c>http/protobuf</c>).</summary>
internal enum OtlpProtocol
{
    Grpc,
    HttpProtobuf,
}

/// <summary>How the agent writes its log lines to standard output.</summary>
internal enum LogFormat
{
    /// <summary>One line per event: time, level, category, message.</summary>
    Text,

    /// <summary>One JSON object per event, with the message's fields as properties.</summary>
    Json,
}

internal sealed record LoggingConfig
{
    public LogFormat Format { get; set; } = LogFormat.Text;

    /// <summary>Null: NODEMESH_LOG_LEVEL, else Information.</summary>
    public Microsoft.Extensions.Logging.LogLevel? Level { get; set; }

    /// <summary>
    /// One line per flow when it ends (identities, addresses, bytes, duration, outcome). Off by default: a console
    /// line per flow cost about 30 % of the agent's throughput at 3,000 new connections/s (measured with
    /// ./build.sh bench); flows are in `nodemesh flows`, the metrics and the spans either way.
    /// </summary>
    public bool AccessLog { get; set; }
}

internal sealed record TelemetryConfig
{
    /// <summary>OTLP export; off unless an endpoint is given here or in OTEL_EXPORTER_OTLP_ENDPOINT.</summary>
    public OtlpConfig Otlp { get; set; } = new();
}

internal sealed record OtlpConfig
{
    /// <summary>The collector, e.g. <c>http://10.0.0.5:4317</c> (gRPC) or <c>http://10.0.0.5:4318</c> (HTTP; /v1/metrics is appended). Empty: OTEL_EXPORTER_OTLP_ENDPOINT, else off.</summary>
    public string Endpoint { get; set; } = "";

    /// <summary>Null: OTEL_EXPORTER_OTLP_PROTOCOL, else gRPC.</summary>
    public OtlpProtocol? Protocol { get; set; }

    /// <summary>How often metrics are pushed. Null: OTEL_METRIC_EXPORT_INTERVAL, else 60 s.</summary>
    public TimeSpan? ExportInterval { get; set; }
}

internal sealed record TunnelConfig
{
    /// <summary>Flows per tunnel connection before the pool opens another one.</summary>
    public int MaxStreamsPerConnection { get; set; } = 100;

    /// <summary>Upper bound of connections per (source identity, peer node).</summary>
    public int MaxConnectionsPerPeer { get; set; } = 8;

    /// <summary>A connection with no flows for this long is closed.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The one bound on setting a flow up: dialling and handshaking a tunnel, the peer agent's answer, and the
    /// connect into the destination workload (on either node) or to a passthrough destination.
    /// </summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A PING goes to a peer that has been silent this long.</summary>
    public TimeSpan KeepaliveInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A peer silent this long is declared lost (also TCP_USER_TIMEOUT on tunnel sockets).</summary>
    public TimeSpan KeepaliveTimeout { get; set; } = TimeSpan.FromSeconds(15);

    // Older forms of the four above, in whole seconds.
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? IdleTimeoutSeconds { get; set; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? ConnectTimeoutSeconds { get; set; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? KeepaliveIntervalSeconds { get; set; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? KeepaliveTimeoutSeconds { get; set; }
}

/// <summary>A workload on this node: its network namespace is captured by the agent.</summary>
internal sealed record WorkloadConfig
{
    public string Name { get; set; } = "";
    public string Ip { get; set; } = "";
    public string Identity { get; set; } = "";
    public string Netns { get; set; } = "";

    /// <summary>"PERMISSIVE" (default: plaintext from outside the mesh accepted) or "STRICT".</summary>
    public string Mode { get; set; } = "PERMISSIVE";

    public IReadOnlyDictionary<string, string> Labels { get; set; } = new Dictionary<string, string>();
}

internal sealed record PeerNodeConfig
{
    public string Name { get; set; } = "";
    public string Address { get; set; } = "";
}

internal sealed record RemoteWorkloadConfig
{
    public string Name { get; set; } = "";
    public string Ip { get; set; } = "";
    public string Identity { get; set; } = "";
    public string Node { get; set; } = "";
}

/// <summary>A service: flows to one of its addresses and ports go to one of its endpoints, balanced.</summary>
internal sealed record ServiceConfig
{
    public string Name { get; set; } = "";

    /// <summary>Virtual IPv4 addresses (addresses no workload has).</summary>
    public IReadOnlyList<string> Addresses { get; set; } = [];

    public IReadOnlyList<ServicePortConfig> Ports { get; set; } = [];

    /// <summary>Names of the workloads that serve it, on any node.</summary>
    public IReadOnlyList<string> Endpoints { get; set; } = [];
}

internal sealed record ServicePortConfig
{
    public int Port { get; set; }

    /// <summary>The endpoints' port; 0: the same as <see cref="Port"/>.</summary>
    public int TargetPort { get; set; }
}
