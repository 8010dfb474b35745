using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.State;

namespace NodeMesh.App;

/// <summary>
/// With <c>ca.role: server</c>, this agent also runs the mesh CA service: nodes join with a join token and
/// then get workload certificates, each only for a workload the registry places on that node.
/// </summary>
internal sealed partial class CaService(
    AgentConfig config, IdentitySetup.Certificates certificates, WorkloadRegistry registry, ILoggerFactory loggers, Telemetry.MeshMetrics? metrics = null,
    Discovery.IIdentityPlacement? placement = null)
    : IHostedService, IAsyncDisposable
{
    private readonly System.Diagnostics.Metrics.Meter _meter = new("NodeMesh.Ca");
    private CaServer? _server;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (config.Ca.Role != "server")
        {
            return Task.CompletedTask;
        }

        CertificateAuthority ca = certificates.Authority ?? throw new StartupException("ca.role is server but this agent holds no CA", new InvalidOperationException());
        JoinTokens tokens;
        try
        {
            tokens = JoinTokens.Open(config.Ca.Dir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new StartupException($"ca.dir: cannot open the join-token secret in {config.Ca.Dir}: {ex.Message}", ex);
        }

        try
        {
            _server = new CaServer(IPEndPoint.Parse(config.Ca.Listen), config.TrustDomain, ca, tokens, WhyNotPlaced,
                new CaServerOptions
                {
                    LeafLifetime = config.Ca.CertificateTtl,
                    NodeLifetime = config.Ca.NodeCertificateTtl,
                    GatewayIdentity = SpiffeId.Parse(config.Gateway.IdentityIn(config.TrustDomain)),
                }, loggers.CreateLogger<CaServer>(), metrics, AwaitPlacementAsync);
            System.Diagnostics.Metrics.Counter<long> requests = _meter.CreateCounter<long>(
                "nodemesh_ca_requests_total", description: "Certificate requests the CA service answered, by kind and result.");
            _server.Decided += d => requests.Add(1, new System.Diagnostics.TagList { { "kind", d.Kind }, { "result", d.Issued ? "issued" : "refused" } });
            _server.Start();
        }
        catch (System.Net.Sockets.SocketException ex)
        {
            throw new StartupException($"cannot listen on {config.Ca.Listen} (ca.listen): {ex.Message}", ex);
        }

        Log.Serving(loggers.CreateLogger<CaService>(), _server.EndPoint.ToString(), config.TrustDomain);
        return Task.CompletedTask;
    }

    /// <summary>How long a request for an identity not placed (yet) waits for the registry before it is refused.</summary>
    internal static readonly TimeSpan PlacementWait = TimeSpan.FromSeconds(3);

    /// <summary>
    /// A workload identity is issued only to the node the registry says it runs on (or, with the kubernetes source,
    /// where the API server schedules a pod of that service account: <paramref name="node"/>'s pods have no address
    /// while their network is set up), and, where ca.nodeIdentities lists the node, only an identity that list
    /// allows; the gateway's identity only to the nodes in ca.gatewayNodes. Null when it may be issued, else why not.
    /// </summary>
    private string? WhyNotPlaced(string node, SpiffeId identity) =>
        identity.Uri == config.Gateway.IdentityIn(config.TrustDomain)
            ? config.Ca.GatewayNodes.Contains(node) || config.Ca.GatewayNodes.Contains("*") ? null : $"{identity} is the gateway's identity, and node {node} is not in ca.gatewayNodes"
        : !NodeIdentityAllowList.Allows(config.Ca.NodeIdentities, node, identity) ? $"{identity} is not in ca.nodeIdentities for node {node}"
        : registry.Current.Workloads.Any(w => w.Identity == identity && string.Equals(w.Node, node, StringComparison.Ordinal)) ? null
        : placement?.Places(node, identity) == true ? null
        : $"{identity} is not registered on node {node}";

    /// <summary>Waits up to <see cref="PlacementWait"/> for the registry to place the identity (not when the allow-list refuses it anyway).</summary>
    private async Task AwaitPlacementAsync(string node, SpiffeId identity, CancellationToken cancellationToken)
    {
        // The gateway's identity is placed by ca.gatewayNodes alone: nothing to wait for.
        if (identity.Uri != config.Gateway.IdentityIn(config.TrustDomain) && NodeIdentityAllowList.Allows(config.Ca.NodeIdentities, node, identity))
        {
            await registry.WaitUntilAsync(_ => WhyNotPlaced(node, identity) is null, PlacementWait, cancellationToken);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken) => await DisposeAsync();

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
            _server = null;
        }

        _meter.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 708, Level = LogLevel.Information, Message = "mesh CA service for {TrustDomain} on {EndPoint}")]
        public static partial void Serving(ILogger logger, string endPoint, string trustDomain);
    }
}
