using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Copy;
using NodeMesh.State;
using NodeMesh.Tunnel;

namespace NodeMesh.Proxy.Inbound;

/// <summary>
/// Serves the flows of one accepted tunnel connection: checks each flow's header names a workload on this
/// node that the caller's identity may reach (the header can never redirect traffic elsewhere), answers with
/// a status byte, then delivers the flow into the destination's namespace.
/// </summary>
internal sealed partial class InboundTunnelProxy(
    WorkloadRegistry registry, ConnectionManager connections, AgentConfig config, ILogger<InboundTunnelProxy> logger)
{
    private readonly Identity.SpiffeId _gatewayIdentity = Identity.SpiffeId.Parse(config.Gateway.IdentityIn(config.TrustDomain));
    private readonly IPAddress _ownAddress = IPAddress.Parse(config.Node.Address);

    /// <param name="peerAddress">The address the tunnel connection comes from: it says which node sent the flows.</param>
    public async Task ServeAsync(TunnelConnection connection, IPAddress? peerAddress, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            TunnelStream? stream = await connection.AcceptFlowAsync(cancellationToken);
            if (stream is null)
            {
                return;
            }

            _ = HandleFlowAsync(connection, peerAddress, stream, cancellationToken);
        }
    }

    private async Task HandleFlowAsync(TunnelConnection connection, IPAddress? peerAddress, TunnelStream stream, CancellationToken cancellationToken)
    {
        // The flow owns the stream: a reset from the caller (or the tunnel's loss) stops it, including a connect
        // still pending, and its end counts the stream's handler done.
        await using Flow flow = connections.Open("inbound", "tunnel", cancellationToken, stream.Header?.TraceParent);
        flow.Own(stream);
        flow.StopWith(stream.Aborted);
        flow.Encrypted = true;
        flow.SourceIdentity = connection.PeerIdentity.Uri;
        try
        {
            await HandleFlowCoreAsync(connection, peerAddress, flow, stream);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // One flow's failure must never take the connection's other flows down.
            Log.Failed(logger, connection.PeerIdentity.Uri, ex);
            flow.Fail(ex.Message);
        }
    }

    private async Task HandleFlowCoreAsync(TunnelConnection connection, IPAddress? peerAddress, Flow flow, TunnelStream stream)
    {
        string peer = connection.PeerIdentity.Uri;
        if (stream.Header is not FlowHeader header)
        {
            string error = stream.HeaderError ?? "missing";
            Log.MalformedHeader(logger, peer, error);
            flow.Refuse("malformed flow header: " + error);
            await AnswerAndCloseAsync(stream, FlowStatus.MalformedHeader);
            return;
        }

        flow.Source = header.Source;
        flow.Destination = header.Destination;
        flow.RequestPrincipal = header.Principal;
        RegistrySnapshot snapshot = registry.Current;
        Workload? sourceWorkload = snapshot.FindByIp(header.Source.Address);
        WorkloadCapture? target = registry.FindCapture(header.Destination.Address);
        flow.SourceWorkload = sourceWorkload;
        flow.DestinationWorkload = target?.Workload;
        IPAddress? from = peerAddress is { IsIPv4MappedToIPv6: true } ? peerAddress.MapToIPv4() : peerAddress;
        // The node's own gateway dials this listener too, for a service endpoint on this node.
        string? sendingNode = SendingNode(snapshot, from) ?? (_ownAddress.Equals(from) ? config.Node.Name : null);
        string? refusal = Check(header, connection.PeerIdentity, sendingNode, sourceWorkload, target?.Workload, config.Ports,
            from is null ? null : new GatewayCaller(_gatewayIdentity, from));
        if (refusal is not null)
        {
            Log.Refused(logger, header.Source.ToString(), peer, header.Destination.ToString(), refusal);
            flow.Refuse(refusal);
            await AnswerAndCloseAsync(stream, FlowStatus.NotLocalWorkload);
            return;
        }

        // Judge against the workload as it is now (a reload may have changed its labels or mode).
        flow.StopWith(target!.Stopping);
        RegistrySnapshot now = registry.Current;
        Workload destination = now.FindByIp(header.Destination.Address) ?? target.Workload;
        if (!connections.Admit(flow, now, new AuthzRequest(destination, header.Destination.Port, connection.PeerIdentity, header.Source.Address, header.Principal), "tunnel").Allowed)
        {
            flow.DestinationWorkload = destination;
            await AnswerAndCloseAsync(stream, FlowStatus.Denied);
            return;
        }

        var (socket, socketError) = await WorkloadDelivery.ConnectAsync(target, header.Source, header.Destination, config.Tunnel.ConnectTimeout, flow.Stopping);
        if (socket is null)
        {
            flow.Refuse($"connect to {header.Destination} failed: {socketError}");
            await AnswerAndCloseAsync(stream, socketError == SocketError.ConnectionRefused ? FlowStatus.ConnectRefused : FlowStatus.ConnectFailed);
            return;
        }

        flow.Own(socket);
        try
        {
            await WriteStatusAsync(stream, FlowStatus.Connected, flow.Stopping);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
        {
            flow.Refuse($"the caller's stream ended before the answer: {ex.Message}");
            await stream.ResetAsync(TunnelError.Cancelled);
            return;
        }

        await flow.CarryAsync(socket, stream);
    }


    /// <summary>
    /// The peer node whose address the tunnel connection comes from, or null if it is none of them. (Agents dial
    /// from their node address; a tunnel from anywhere else cannot vouch for any workload's source address.)
    /// </summary>
    internal static string? SendingNode(RegistrySnapshot snapshot, IPAddress? peerAddress)
    {
        if (peerAddress is null)
        {
            return null;
        }

        IPAddress address = peerAddress.IsIPv4MappedToIPv6 ? peerAddress.MapToIPv4() : peerAddress;
        foreach ((string node, IPEndPoint endPoint) in snapshot.PeerNodes)
        {
            if (endPoint.Address.Equals(address))
            {
                return node;
            }
        }

        return null;
    }

    /// <param name="sendingNode">The peer node the tunnel comes from (<see cref="SendingNode"/>), null if unknown.</param>
    /// <summary>The checks a flow must pass before anything is connected. Returns null when it may proceed.</summary>
    /// <param name="gateway">The gateway identity, and the address the tunnel comes from: a node's gateway speaks from its node's address.</param>
    internal static string? Check(FlowHeader header, Identity.SpiffeId caller, string? sendingNode, Workload? sourceWorkload, Workload? target, PortsConfig ports,
        GatewayCaller? gateway = null)
    {
        if (target is null || !target.IsLocal)
        {
            return $"destination {header.Destination.Address} is not a workload on this node";
        }

        int port = header.Destination.Port;
        if (port == ports.Outbound || port == ports.InboundPlaintext || port == ports.Tunnel)
        {
            return $"destination port {port} is one of the agent's own ports";
        }

        // Only a gateway speaks for a caller it authenticated; from anyone else a principal would be a forgery.
        if (header.Principal is not null && (sourceWorkload is not null || caller != gateway?.Identity))
        {
            return $"the flow carries a request principal, which only the gateway's identity ({gateway?.Identity.ToString() ?? "none"}) may send; the caller is {caller}";
        }

        // The source address is bound transparently in the workload's namespace, so it must really be the caller's.
        if (sourceWorkload is null)
        {
            // A request that entered at a node's gateway: not a workload, but the gateway's identity, from the address of the node it runs on.
            if (gateway is { } g && caller == g.Identity && sendingNode is not null && header.Source.Address.Equals(g.TunnelFrom))
            {
                return null;
            }

            return caller == gateway?.Identity
                ? $"source {header.Source.Address} is not the address of the node the gateway's tunnel comes from ({gateway.Value.TunnelFrom})"
                : $"source {header.Source.Address} is not a known mesh workload";
        }

        if (sourceWorkload.Identity != caller)
        {
            return $"source {header.Source.Address} belongs to {sourceWorkload.Identity}, but the caller is {caller}";
        }

        // The identity alone is not enough: replicas of one identity run on several nodes, and a node may speak
        // only for its own workloads.
        if (sourceWorkload.Node != sendingNode)
        {
            return sendingNode is null
                ? $"source {header.Source.Address} is a workload of node {sourceWorkload.Node}, but the tunnel does not come from any known node's address"
                : $"source {header.Source.Address} is a workload of node {sourceWorkload.Node}, but the tunnel comes from node {sendingNode}";
        }

        return null;
    }

    private static async ValueTask WriteStatusAsync(TunnelStream flow, FlowStatus status, CancellationToken cancellationToken)
    {
        // Copied into the connection's queue: the one-byte array is free again when this returns.
        await flow.WriteAsync(new[] { (byte)status }, cancellationToken);
    }

    private static async Task AnswerAndCloseAsync(TunnelStream flow, FlowStatus status)
    {
        try
        {
            await WriteStatusAsync(flow, status, CancellationToken.None);
            await flow.CompleteWritesAsync(CancellationToken.None);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            // The connection is gone; the caller sees its flow fail either way.
        }

        // The caller resets its side once it reads the status; anything it sent meanwhile is dropped.
        flow.Connection.Forget(flow);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "inbound flow {Source} ({SourceIdentity}) -> {Destination} refused: {Reason}")]
        public static partial void Refused(ILogger logger, string source, string sourceIdentity, string destination, string reason);

        [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "malformed flow header from {SourceIdentity}: {Error}")]
        public static partial void MalformedHeader(ILogger logger, string sourceIdentity, string error);

        [LoggerMessage(EventId = 202, Level = LogLevel.Error, Message = "inbound flow from {SourceIdentity} failed")]
        public static partial void Failed(ILogger logger, string sourceIdentity, Exception exception);
    }
}

/// <summary>The gateway's identity (mesh-wide), and the address a tunnel comes from.</summary>
internal readonly record struct GatewayCaller(Identity.SpiffeId Identity, IPAddress TunnelFrom);
