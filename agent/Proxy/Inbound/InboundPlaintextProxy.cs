using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Copy;
using NodeMesh.Interop;
using NodeMesh.State;

namespace NodeMesh.Proxy.Inbound;

/// <summary>
/// Serves a workload's inbound plaintext listener: TCP arriving from outside the mesh is TPROXY'd here with
/// its original destination intact, and delivered to the workload (PERMISSIVE) with the real client address.
/// </summary>
internal sealed partial class InboundPlaintextProxy(
    WorkloadRegistry registry, FlowRecorder recorder, Authorizer authorizer, AuthzMetrics authorizerMetrics, ConnectionManager connections, AgentConfig config, ILogger<InboundPlaintextProxy> logger)
{
    public Task RunAsync(WorkloadCapture capture) =>
        ListenerLoop.RunAsync(capture.InboundListener, recorder, client => HandleAsync(capture, client), capture.Stopping);

    private async Task HandleAsync(WorkloadCapture capture, Socket client)
    {
        long started = Stopwatch.GetTimestamp();
        try
        {
            client.NoDelay = true;
            SocketOptions.SetAbortOnClose(client);
            var source = (IPEndPoint)client.RemoteEndPoint!;
            var destination = (IPEndPoint)client.LocalEndPoint!;
            int port = destination.Port;
            if (!destination.Address.Equals(capture.Workload.Ip) || port == config.Ports.Outbound || port == config.Ports.InboundPlaintext || port == config.Ports.Tunnel)
            {
                string reason = $"{destination} is not a service port of {capture.Workload.Name}";
                Log.Refused(logger, source.ToString(), destination.ToString(), reason);
                BidirectionalCopy.Abort(client);
                recorder.Record("inbound", "plaintext", source, destination, null, capture.Workload, null, encrypted: false, started, default, reason);
                return;
            }

            Workload workload = registry.Current.FindByIp(capture.Workload.Ip) ?? capture.Workload;
            if (workload.Mode == PeerMode.Strict)
            {
                string reason = $"plaintext refused: {workload.Name} is STRICT (mesh traffic only)";
                authorizerMetrics.Deny(workload.Name, "strict-mode");
                Log.Refused(logger, source.ToString(), destination.ToString(), reason);
                BidirectionalCopy.Abort(client);
                recorder.Record("inbound", "plaintext", source, destination, null, workload, null, encrypted: false, started, default, reason);
                return;
            }

            var request = new AuthzRequest(workload, port, null, source.Address);

            // Registered before the decision, so a policy reload in between cannot miss this flow.
            using var flowStop = CancellationTokenSource.CreateLinkedTokenSource(capture.Stopping);
            using ConnectionManager.Registration live = connections.Register(request, flowStop, $"{source} (plaintext) -> {destination}");
            AuthzDecision decision = authorizer.Authorize(request, "plaintext");
            if (!decision.Allowed)
            {
                BidirectionalCopy.Abort(client);
                recorder.Record("inbound", "plaintext", source, destination, null, workload, null, encrypted: false, started, default, "denied: " + decision.Describe());
                return;
            }

            var (upstream, error) = await WorkloadDelivery.ConnectAsync(capture, source, destination, flowStop.Token);
            if (upstream is null)
            {
                BidirectionalCopy.Abort(client);
                recorder.Record("inbound", "plaintext", source, destination, null, capture.Workload, null, encrypted: false, started, default, $"connect failed: {error}");
                return;
            }

            CopyResult copy = await BidirectionalCopy.RunAsync(client, upstream, flowStop.Token);
            if (live.ClosedBecause is { } closedBy && copy.Error is not null)
            {
                copy = copy with { Error = "closed by a policy change: " + closedBy.Describe() };
            }

            if (copy.Error is null)
            {
                BidirectionalCopy.Close(client);
                BidirectionalCopy.Close(upstream);
            }
            else
            {
                BidirectionalCopy.Abort(client);
                BidirectionalCopy.Abort(upstream);
            }

            recorder.Record("inbound", "plaintext", source, destination, null, workload, null, encrypted: false, started, copy);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.Failed(logger, capture.Workload.Name, ex);
            BidirectionalCopy.Abort(client);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 210, Level = LogLevel.Warning, Message = "inbound plaintext {Source} -> {Destination} refused: {Reason}")]
        public static partial void Refused(ILogger logger, string source, string destination, string reason);

        [LoggerMessage(EventId = 211, Level = LogLevel.Error, Message = "inbound plaintext flow to {Workload} failed")]
        public static partial void Failed(ILogger logger, string workload, Exception exception);
    }
}
