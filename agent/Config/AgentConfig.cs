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
    public CertificatesConfig Certificates { get; set; } = new();
    public string StateDir { get; set; } = "/var/lib/nodemesh";
    public string ApiSocket { get; set; } = "/run/nodemesh/agent.sock";
    public ApiConfig Api { get; set; } = new();
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

/// <summary>The mesh CA: its directory (for the embedded source or the CA role), or where to reach it.</summary>
internal sealed record CaConfig
{
    /// <summary>The CA directory made by <c>nodemesh ca init</c> (embedded source, or role "server").</summary>
    public string Dir { get; set; } = "/var/lib/nodemesh/ca";

    /// <summary>Lifetime of workload certificates ("24h", "30m", "90s"); they are renewed at about half-life.</summary>
    public string CertificateTtl { get; set; } = "24h";

    /// <summary>Lifetime of node certificates the CA service issues to joined nodes.</summary>
    public string NodeCertificateTtl { get; set; } = "24h";

    /// <summary>The parsed lifetimes (valid once the configuration has been validated).</summary>
    public TimeSpan CertificateLifetime => Config.ConfigLoader.ParseDuration(CertificateTtl);

    public TimeSpan NodeCertificateLifetime => Config.ConfigLoader.ParseDuration(NodeCertificateTtl);

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
}

/// <summary>Where this agent's certificates come from.</summary>
internal sealed record CertificatesConfig
{
    /// <summary>"embedded" (signed locally by the CA in ca.dir), "ca" (the CA service), or "files".</summary>
    public string Source { get; set; } = "embedded";

    /// <summary>Directory an external issuer keeps fresh (source "files").</summary>
    public string Dir { get; set; } = "";

    public int PollSeconds { get; set; } = 5;
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
}

internal sealed record TunnelConfig
{
    /// <summary>Flows per tunnel connection before the pool opens another one.</summary>
    public int MaxStreamsPerConnection { get; set; } = 100;

    /// <summary>Upper bound of connections per (source identity, peer node).</summary>
    public int MaxConnectionsPerPeer { get; set; } = 8;

    /// <summary>A connection with no flows for this long is closed.</summary>
    public int IdleTimeoutSeconds { get; set; } = 60;

    /// <summary>
    /// The one bound on setting a flow up: dialling and handshaking a tunnel, the peer agent's answer, and the
    /// connect into the destination workload (on either node) or to a passthrough destination.
    /// </summary>
    public int ConnectTimeoutSeconds { get; set; } = 5;

    [System.Text.Json.Serialization.JsonIgnore]
    public TimeSpan ConnectTimeout => TimeSpan.FromSeconds(ConnectTimeoutSeconds);

    /// <summary>A PING goes to a peer that has been silent this long.</summary>
    public int KeepaliveIntervalSeconds { get; set; } = 5;

    /// <summary>A peer silent this long is declared lost (also TCP_USER_TIMEOUT on tunnel sockets).</summary>
    public int KeepaliveTimeoutSeconds { get; set; } = 15;
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
