using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Copy;
using NodeMesh.Identity;
using NodeMesh.Interop;
using NodeMesh.Proxy.Inbound;
using NodeMesh.State;
using NodeMesh.Tunnel;

namespace NodeMesh.Proxy.Outbound;

/// <summary>
/// Serves a workload's outbound listener: every connection the workload makes arrives here (REDIRECT), is
/// planned from the registry snapshot, and is carried through a tunnel, delivered locally, or passed through.
/// </summary>
internal sealed partial class OutboundProxy(
    WorkloadRegistry registry, TunnelPool pool, FlowRecorder recorder, Authorizer authorizer, ConnectionManager connections, AgentConfig config,
    ILogger<OutboundProxy> logger)
{
    private readonly AgentEndpoints _agent = AgentEndpoints.From(config);

    public Task RunAsync(WorkloadCapture capture) =>
        ListenerLoop.RunAsync(capture.OutboundListener, recorder, client => HandleAsync(capture, client), capture.Stopping);

    private async Task HandleAsync(WorkloadCapture capture, Socket client)
    {
        long started = Stopwatch.GetTimestamp();
        IPEndPoint source;
        IPEndPoint destination;
        IPEndPoint acceptedOn;
        try
        {
            client.NoDelay = true;
            SocketOptions.SetAbortOnClose(client);
            source = (IPEndPoint)client.RemoteEndPoint!;
            acceptedOn = (IPEndPoint)client.LocalEndPoint!;
            destination = SocketOptions.GetOriginalDestination(client);
        }
        catch (Exception ex) when (ex is SocketException or InteropException or ObjectDisposedException)
        {
            Log.NoOriginalDestination(logger, capture.Workload.Name, ex.Message);
            BidirectionalCopy.Abort(client);
            return;
        }

        OutboundPlan plan = OutboundPlan.Decide(registry.Current, capture.Workload, destination, config.Node.Name, _agent, acceptedOn);
        try
        {
            switch (plan)
            {
                case OutboundPlan.ViaTunnel tunnel:
                    await ViaTunnelAsync(capture, client, source, destination, tunnel, started);
                    break;
                case OutboundPlan.Local local:
                    await LocalAsync(capture, client, source, destination, local, started);
                    break;
                case OutboundPlan.Passthrough:
                    await PassthroughAsync(capture, client, source, destination, started);
                    break;
                case OutboundPlan.Refuse refuse:
                    Refuse(client, source, destination, capture.Workload, null, "local", refuse.Reason, started);
                    break;
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A bug or an unexpected failure in one flow must not take the listener down.
            Log.FlowFailed(logger, source.ToString(), destination.ToString(), ex);
            BidirectionalCopy.Abort(client);
        }
    }

    private async Task ViaTunnelAsync(WorkloadCapture capture, Socket client, IPEndPoint source, IPEndPoint destination, OutboundPlan.ViaTunnel plan, long started)
    {
        TunnelLease lease;
        try
        {
            lease = await pool.AcquireAsync(plan.Source.Identity, plan.Destination.Node, plan.PeerAgent, capture.Stopping);
        }
        catch (Exception ex) when (ex is SocketException or IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException
            or CertificateUnavailableException)
        {
            Refuse(client, source, destination, plan.Source, plan.Destination, "tunnel", $"no tunnel to node {plan.Destination.Node} ({plan.PeerAgent}): {ex.Message}", started);
            return;
        }

        using (lease)
        {
            TunnelStream flow;
            FlowStatus status;
            try
            {
                var header = new FlowHeader(destination, source, Activity.Current?.Id is { Length: FlowHeader.TraceParentLength } id ? id : null);
                flow = await lease.Connection.OpenFlowAsync(header, capture.Stopping);

                // A peer that stops answering (a partition) must not hold the client until keepalive gives up.
                using var answer = CancellationTokenSource.CreateLinkedTokenSource(capture.Stopping);
                answer.CancelAfter(TimeSpan.FromSeconds(config.Tunnel.ConnectTimeoutSeconds));
                try
                {
                    status = await ReadStatusAsync(flow, answer.Token);
                }
                catch (OperationCanceledException) when (!capture.Stopping.IsCancellationRequested)
                {
                    await flow.ResetAsync(TunnelError.Cancelled);
                    throw new IOException($"peer agent did not answer within {config.Tunnel.ConnectTimeoutSeconds} s");
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
            {
                Refuse(client, source, destination, plan.Source, plan.Destination, "tunnel", $"tunnel to node {plan.Destination.Node} failed: {ex.Message}", started);
                return;
            }

            if (status != FlowStatus.Connected)
            {
                await flow.ResetAsync(TunnelError.Cancelled);
                Refuse(client, source, destination, plan.Source, plan.Destination, "tunnel", $"peer agent answered {status}", started);
                return;
            }

            CopyResult copy = await BidirectionalCopy.RunAsync(client, flow, capture.Stopping);
            Finish(client, copy);
            recorder.Record("outbound", "tunnel", source, destination, plan.Source, plan.Destination, null, encrypted: true, started, copy);
        }
    }

    private async Task LocalAsync(WorkloadCapture capture, Socket client, IPEndPoint source, IPEndPoint destination, OutboundPlan.Local plan, long started)
    {
        WorkloadCapture? target = registry.FindCapture(plan.Destination.Ip);
        if (target is null)
        {
            Refuse(client, source, destination, plan.Source, plan.Destination, "local", $"{plan.Destination.Name} is not captured on this node", started);
            return;
        }

        // The source address is bound transparently in the destination's namespace and judged by ipBlocks
        // rules, so it must be the source workload's own (a pod could add an alias address).
        if (!source.Address.Equals(plan.Source.Ip))
        {
            Refuse(client, source, destination, plan.Source, plan.Destination, "local", $"source address {source.Address} is not {plan.Source.Name}'s ({plan.Source.Ip})", started);
            return;
        }

        // Same node, same rules: the destination's policies apply as if the flow had come through a tunnel.
        var request = new AuthzRequest(registry.Current.FindByIp(plan.Destination.Ip) ?? plan.Destination, destination.Port, plan.Source.Identity, source.Address);
        using var flowStop = CancellationTokenSource.CreateLinkedTokenSource(capture.Stopping, target.Stopping);
        using ConnectionManager.Registration live = connections.Register(request, flowStop, $"{source} ({plan.Source.Identity}) -> {destination}");
        AuthzDecision decision = authorizer.Authorize(request, "local");
        if (!decision.Allowed)
        {
            Refuse(client, source, destination, plan.Source, plan.Destination, "local", "denied: " + decision.Describe(), started);
            return;
        }

        (Socket? upstream, SocketError error) = await WorkloadDelivery.ConnectAsync(target, source, destination, flowStop.Token);
        if (upstream is null)
        {
            Refuse(client, source, destination, plan.Source, plan.Destination, "local", $"connect to {destination} failed: {error}", started);
            return;
        }

        CopyResult copy = await CopyAsync(client, upstream, flowStop.Token, CancellationToken.None);
        if (live.ClosedBecause is { } closedBy && copy.Error is not null)
        {
            copy = copy with { Error = "closed by a policy change: " + closedBy.Describe() };
        }

        recorder.Record("outbound", "local", source, destination, plan.Source, plan.Destination, null, encrypted: false, started, copy);
    }

    private async Task PassthroughAsync(WorkloadCapture capture, Socket client, IPEndPoint source, IPEndPoint destination, long started)
    {
        Socket upstream = await capture.CreateSocketAsync(transparent: false);
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(capture.Stopping);
            timeout.CancelAfter(TimeSpan.FromSeconds(config.Tunnel.ConnectTimeoutSeconds));
            await upstream.ConnectAsync(destination, timeout.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            upstream.Dispose();
            Refuse(client, source, destination, capture.Workload, null, "passthrough", $"connect to {destination} failed: {ex.Message}", started);
            return;
        }

        CopyResult copy = await CopyAsync(client, upstream, capture.Stopping, CancellationToken.None);
        recorder.Record("outbound", "passthrough", source, destination, capture.Workload, null, null, encrypted: false, started, copy);
    }

    private static async Task<CopyResult> CopyAsync(Socket client, Socket upstream, CancellationToken a, CancellationToken b)
    {
        using var both = CancellationTokenSource.CreateLinkedTokenSource(a, b);
        CopyResult copy = await BidirectionalCopy.RunAsync(client, upstream, both.Token);
        Finish(client, copy);
        Finish(upstream, copy);
        return copy;
    }

    private static void Finish(Socket socket, CopyResult copy)
    {
        if (copy.Error is null)
        {
            BidirectionalCopy.Close(socket);
        }
        else
        {
            BidirectionalCopy.Abort(socket);
        }
    }

    /// <summary>Waits for the peer agent's one-byte answer to the flow header.</summary>
    internal static async Task<FlowStatus> ReadStatusAsync(TunnelStream flow, CancellationToken cancellationToken)
    {
        ReadResult result = await flow.Input.ReadAtLeastAsync(1, cancellationToken);
        if (result.Buffer.IsEmpty)
        {
            throw new IOException("the peer agent closed the flow before answering");
        }

        var status = (FlowStatus)result.Buffer.FirstSpan[0];
        flow.Input.AdvanceTo(result.Buffer.GetPosition(1));
        await flow.ConsumedAsync(1, cancellationToken);
        return status;
    }

    private void Refuse(Socket client, IPEndPoint source, IPEndPoint destination, Workload? from, Workload? to, string path, string reason, long started)
    {
        BidirectionalCopy.Abort(client);
        Log.Refused(logger, source.ToString(), from?.Identity.Uri ?? "-", destination.ToString(), to?.Identity.Uri ?? "-", reason);
        recorder.Record("outbound", path, source, destination, from, to, null, encrypted: false, started, default, reason);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "outbound flow {Source} ({SourceIdentity}) -> {Destination} ({DestinationIdentity}) refused: {Reason}")]
        public static partial void Refused(ILogger logger, string source, string sourceIdentity, string destination, string destinationIdentity, string reason);

        [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "captured connection of {Workload} dropped: no original destination ({Error})")]
        public static partial void NoOriginalDestination(ILogger logger, string workload, string error);

        [LoggerMessage(EventId = 102, Level = LogLevel.Error, Message = "outbound flow {Source} -> {Destination} failed")]
        public static partial void FlowFailed(ILogger logger, string source, string destination, Exception exception);
    }
}
