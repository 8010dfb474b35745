using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Identity;
using NodeMesh.Proxy.Outbound;
using NodeMesh.State;
using NodeMesh.Tunnel;

namespace NodeMesh.Gateway;

/// <summary>
/// Opens the gateway's connections to a mesh workload (the endpoint the backend's pool chose): a flow through the
/// tunnel to the endpoint's node under the gateway's identity, from this node's address. Endpoints on this node go
/// through this node's own tunnel listener, so the same checks, policies and telemetry apply to every request.
/// </summary>
internal sealed class MeshServiceConnector(WorkloadRegistry registry, TunnelPool pool, AgentConfig config)
{
    private readonly IPAddress _nodeAddress = IPAddress.Parse(config.Node.Address);

    public SpiffeId Identity { get; } = SpiffeId.Parse(config.Gateway.IdentityIn(config.TrustDomain));

    /// <summary>A connection to <paramref name="endpoint"/> on <paramref name="targetPort"/>, through the tunnel to its node.</summary>
    /// <param name="traceParent">The span of the request that opens it, carried in the flow header (the receiving agent's flow span is its child).</param>
    /// <param name="principal">The caller the gateway authenticated, carried in the flow header for the receiving agent's policies; null: none.</param>
    /// <exception cref="MeshBackendException">It could not be reached; the message says why.</exception>
    public ValueTask<Stream> ConnectAsync(Workload endpoint, int targetPort, string? traceParent, string? principal, CancellationToken cancellationToken) =>
        OpenAsync(registry.Current, endpoint, new IPEndPoint(endpoint.Ip, targetPort), traceParent, principal, cancellationToken);

    private async ValueTask<Stream> OpenAsync(RegistrySnapshot snapshot, Workload endpoint, IPEndPoint target, string? traceParent, string? principal, CancellationToken cancellationToken)
    {
        IPEndPoint peer = endpoint.Node == config.Node.Name
            ? new IPEndPoint(_nodeAddress, config.Ports.Tunnel)
            : snapshot.PeerNodes.GetValueOrDefault(endpoint.Node) ?? throw new MeshBackendException($"node {endpoint.Node} is not a known peer");
        TunnelLease lease;
        try
        {
            lease = await pool.AcquireAsync(Identity, endpoint.Node, peer, cancellationToken);
        }
        catch (CertificateUnavailableException ex)
        {
            throw new MeshBackendException($"no certificate for the gateway's identity {Identity}: {ex.Message}", final: true);
        }
        catch (Exception ex) when (ex is SocketException or IOException or AuthenticationException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            throw new MeshBackendException($"no tunnel to node {endpoint.Node} ({peer}): {ex.Message}");
        }

        TunnelStream? flow = null;
        try
        {
            flow = await lease.Connection.OpenFlowAsync(new FlowHeader(target, new IPEndPoint(_nodeAddress, 0), traceParent, principal), cancellationToken);
            using var answer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            answer.CancelAfter(config.Tunnel.ConnectTimeout);
            FlowStatus status = await OutboundProxy.ReadStatusAsync(flow, answer.Token);
            if (status != FlowStatus.Connected)
            {
                await flow.ResetAsync(TunnelError.Cancelled);
                lease.Dispose();
                // A denial is the destination's policy, not its health: no other endpoint is tried.
                throw new MeshBackendException($"the endpoint's agent answered {status}", final: status == FlowStatus.Denied);
            }

            return new TunnelFlowStream(flow, lease);
        }
        catch (Exception ex) when (ex is (IOException and not MeshBackendException) or ObjectDisposedException or OperationCanceledException)
        {
            if (flow is not null)
            {
                await flow.ResetAsync(TunnelError.Cancelled);
            }

            lease.Dispose();
            cancellationToken.ThrowIfCancellationRequested();
            throw new MeshBackendException($"tunnel to node {endpoint.Node} failed: {ex.Message}");
        }
    }

}

/// <summary>A mesh backend could not be connected; <see cref="Final"/>: trying another endpoint would not help (a denial).</summary>
internal sealed class MeshBackendException(string message, bool final = false) : IOException(message)
{
    public bool Final { get; } = final;
}
