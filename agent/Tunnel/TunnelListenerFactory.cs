using System.Net;
using Microsoft.Extensions.Logging;
using NodeMesh.Identity;
using NodeMesh.Telemetry;

namespace NodeMesh.Tunnel;

/// <summary>Creates the tunnel listener once the agent knows its address (binding happens at start, not at composition).</summary>
internal sealed class TunnelListenerFactory(
    ICertificateProvider certificates, PeerCertificateVerifier verifier, MeshMetrics metrics,
    Config.AgentConfig config, TunnelOptions options, ILogger<TunnelListener> logger)
{
    /// <param name="serve">Serves an accepted, authenticated connection's flows (the inbound proxy, a layer above the tunnel).</param>
    public TunnelListener Create(IPEndPoint endPoint, TunnelListener.ConnectionHandler serve) =>
        new(endPoint, certificates, verifier, serve, metrics, MeshIdentities.Node(config.TrustDomain, config.Node.Name), options, logger);
}
