using System.Net;
using Microsoft.Extensions.Logging;
using NodeMesh.Identity;
using NodeMesh.Proxy.Inbound;
using NodeMesh.Telemetry;

namespace NodeMesh.Tunnel;

/// <summary>Creates the tunnel listener once the agent knows its address (binding happens at start, not at composition).</summary>
internal sealed class TunnelListenerFactory(
    ICertificateProvider certificates, PeerCertificateVerifier verifier, InboundTunnelProxy inbound, MeshMetrics metrics,
    Config.AgentConfig config, TunnelOptions options, ILogger<TunnelListener> logger)
{
    public TunnelListener Create(IPEndPoint endPoint) =>
        new(endPoint, certificates, verifier, inbound, metrics, MeshIdentities.Node(config.TrustDomain, config.Node.Name), options, logger);
}
