namespace NodeMesh.Config;

// The agent's configuration file, as read from JSON. Setters exist for the source-generated reader only
// (it assigns missing init-only members their default, erasing the defaults below); once loaded a
// configuration is never changed: a reload builds a new snapshot.

/// <summary>The whole configuration file.</summary>
internal sealed record AgentConfig
{
    public NodeConfig Node { get; set; } = new();
    public string TrustDomain { get; set; } = "cluster.local";
    public CaConfig Ca { get; set; } = new();
    public string StateDir { get; set; } = "/var/lib/nodemesh";
    public string ApiSocket { get; set; } = "/run/nodemesh/agent.sock";
    public PortsConfig Ports { get; set; } = new();
    public TunnelConfig Tunnel { get; set; } = new();
    public int DrainSeconds { get; set; } = 5;
    public IReadOnlyList<WorkloadConfig> Workloads { get; set; } = [];
    public IReadOnlyList<PeerNodeConfig> Nodes { get; set; } = [];
    public IReadOnlyList<RemoteWorkloadConfig> RemoteWorkloads { get; set; } = [];

    /// <summary>L4 authorization policies, enforced by the receiving agent; reloaded when the file changes.</summary>
    public IReadOnlyList<Authz.PolicyConfig> Policies { get; set; } = [];
}

/// <summary>This node: its name and the address peers reach its tunnel listener on.</summary>
internal sealed record NodeConfig
{
    public string Name { get; set; } = "";
    public string Address { get; set; } = "";
}

/// <summary>The embedded certificate authority (created by <c>nodemesh ca init</c>).</summary>
internal sealed record CaConfig
{
    public string Dir { get; set; } = "/var/lib/nodemesh/ca";
    public int CertificateTtlMinutes { get; set; } = 24 * 60;
}

internal sealed record PortsConfig
{
    public int Outbound { get; set; } = 15001;
    public int InboundPlaintext { get; set; } = 15006;
    public int Tunnel { get; set; } = 15008;
}

internal sealed record TunnelConfig
{
    /// <summary>Flows per tunnel connection before the pool opens another one.</summary>
    public int MaxStreamsPerConnection { get; set; } = 100;

    /// <summary>Upper bound of connections per (source identity, peer node).</summary>
    public int MaxConnectionsPerPeer { get; set; } = 8;

    /// <summary>A connection with no flows for this long is closed.</summary>
    public int IdleTimeoutSeconds { get; set; } = 60;

    public int ConnectTimeoutSeconds { get; set; } = 5;
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
