namespace NodeMesh.Discovery;

/// <summary>How to reach the etcd cluster the registry lives in (discovery.etcd in the config).</summary>
internal sealed record EtcdOptions
{
    /// <summary>Client URLs of the members, e.g. https://10.0.0.1:2379; all must use the same scheme.</summary>
    public IReadOnlyList<Uri> Endpoints { get; init; } = [];

    /// <summary>etcd user (etcd's own authentication); none when empty.</summary>
    public string Username { get; init; } = "";

    public string Password { get; init; } = "";

    /// <summary>PEM files: the CA that signed the members' certificates, and this node's client certificate and key.</summary>
    public string CaFile { get; init; } = "";

    public string CertFile { get; init; } = "";

    public string KeyFile { get; init; } = "";

    public TimeSpan DialTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>The deadline of one unary call (a list, a put, a lease grant).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
