using NodeMesh.Contracts;

namespace NodeMesh.Admin;

/// <summary>What the admin and readiness endpoints show of the agent: read-only views, taken when asked.</summary>
internal interface IAgentState
{
    /// <summary>The local API's answer to a read-only command (<c>status</c>, <c>workload-list</c>, <c>flows</c>): the same data the CLI shows.</summary>
    Task<ApiResponse> QueryAsync(string command, CancellationToken cancellationToken);

    IReadOnlyList<CertificateView> Certificates();

    IReadOnlyList<PolicyView> Policies();

    /// <summary>What is missing before the agent can serve every configured workload; empty when ready.</summary>
    IReadOnlyList<string> NotReady();

    /// <summary>The configuration in force, as JSON.</summary>
    string ConfigJson();
}
