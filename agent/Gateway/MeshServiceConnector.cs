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
/// Opens the gateway's connections to a mesh service: an endpoint of the service chosen like a workload's flow
/// (power of two choices, failed endpoints marked down, at most three tried), then a flow through the tunnel to
/// the endpoint's node under the gateway's identity, from this node's address. Endpoints on this node go through
/// this node's own tunnel listener, so the same checks, policies and telemetry apply to every request.
/// </summary>
internal sealed partial class MeshServiceConnector(WorkloadRegistry registry, TunnelPool pool, AgentConfig config, ILogger<MeshServiceConnector> logger)
{
    private const int MaxAttempts = 3;

    private readonly ServiceBalancer _balancer = new();
    private readonly IPAddress _nodeAddress = IPAddress.Parse(config.Node.Address);

    public SpiffeId Identity { get; } = SpiffeId.Parse(config.Gateway.IdentityIn(config.TrustDomain));

    /// <summary>A connection to one endpoint of <paramref name="serviceName"/> on its <paramref name="port"/>.</summary>
    /// <param name="traceParent">The span of the request that opens it, carried in the flow header (the receiving agent's flow span is its child).</param>
    /// <exception cref="MeshBackendException">No endpoint could be reached; the message says why for each one tried.</exception>
    public async ValueTask<Stream> ConnectAsync(string serviceName, int port, string? traceParent, CancellationToken cancellationToken)
    {
        RegistrySnapshot snapshot = registry.Current;
        MeshService? service = null;
        foreach (MeshService candidate in snapshot.Services)
        {
            if (candidate.Name == serviceName)
            {
                service = candidate;
                break;
            }
        }

        if (service is null)
        {
            throw new MeshBackendException($"service {serviceName} is not in the registry");
        }

        int targetPort = service.Ports.FirstOrDefault(p => p.Port == port) is { Port: > 0 } mapped ? mapped.TargetPort : 0;
        if (targetPort == 0)
        {
            throw new MeshBackendException($"service {serviceName} has no port {port}");
        }

        List<Workload> endpoints = [.. service.Endpoints.Select(snapshot.FindByName).OfType<Workload>()];
        var tried = new List<string>();
        var failures = new List<string>();
        while (tried.Count < MaxAttempts && _balancer.Pick(service, endpoints, tried, Random.Shared) is { } endpoint)
        {
            tried.Add(endpoint.Name);
            try
            {
                return await OpenAsync(snapshot, endpoint, new IPEndPoint(endpoint.Ip, targetPort), traceParent, cancellationToken);
            }
            catch (MeshBackendException ex)
            {
                failures.Add($"{endpoint.Name}: {ex.Message}");
                if (ex.Final)
                {
                    break;
                }

                if (_balancer.MarkDown(service, endpoint))
                {
                    Log.EndpointDown(logger, serviceName, endpoint.Name, ex.Message);
                }
            }
        }

        throw new MeshBackendException(endpoints.Count == 0
            ? $"service {serviceName} has no registered endpoint"
            : $"service {serviceName}: no endpoint took the connection ({string.Join("; ", failures)})");
    }

    private async ValueTask<Stream> OpenAsync(RegistrySnapshot snapshot, Workload endpoint, IPEndPoint target, string? traceParent, CancellationToken cancellationToken)
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
            flow = await lease.Connection.OpenFlowAsync(new FlowHeader(target, new IPEndPoint(_nodeAddress, 0), traceParent), cancellationToken);
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

    private static partial class Log
    {
        [LoggerMessage(EventId = 1500, Level = LogLevel.Warning, Message = "gateway: service {Service} endpoint {Endpoint} marked down ({Reason})")]
        public static partial void EndpointDown(ILogger logger, string service, string endpoint, string reason);
    }
}

/// <summary>A mesh backend could not be connected; <see cref="Final"/>: trying another endpoint would not help (a denial).</summary>
internal sealed class MeshBackendException(string message, bool final = false) : IOException(message)
{
    public bool Final { get; } = final;
}
