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
    WorkloadRegistry registry, FlowRecorder recorder, ConnectionManager connections, AgentConfig config, ILogger<InboundPlaintextProxy> logger)
{
    public Task RunAsync(WorkloadCapture capture) =>
        ListenerLoop.RunAsync(capture.InboundListener, "inbound", "plaintext", connections, recorder, (flow, client) => HandleAsync(capture, flow, client), capture.Stopping);

    private async Task HandleAsync(WorkloadCapture capture, Flow flow, Socket client)
    {
        flow.DestinationWorkload = capture.Workload;
        try
        {
            client.NoDelay = true;
            SocketOptions.SetAbortOnClose(client);
            var source = (IPEndPoint)client.RemoteEndPoint!;
            var destination = (IPEndPoint)client.LocalEndPoint!;
            flow.Source = source;
            flow.Destination = destination;
            int port = destination.Port;
            if (!destination.Address.Equals(capture.Workload.Ip) || port == config.Ports.Outbound || port == config.Ports.InboundPlaintext || port == config.Ports.Tunnel)
            {
                string reason = $"{destination} is not a service port of {capture.Workload.Name}";
                Log.Refused(logger, source.ToString(), destination.ToString(), reason);
                flow.DestinationWorkload = null;
                flow.Refuse(reason);
                return;
            }

            // Judged against the workload as it is now (a reload may have changed its labels or mode); STRICT refuses plaintext here.
            RegistrySnapshot snapshot = registry.Current;
            Workload workload = snapshot.FindByIp(capture.Workload.Ip) ?? capture.Workload;
            flow.DestinationWorkload = workload;
            if (!connections.Admit(flow, snapshot, new AuthzRequest(workload, port, null, source.Address), "plaintext").Allowed)
            {
                return;
            }

            var (upstream, error) = await WorkloadDelivery.ConnectAsync(capture, source, destination, config.Tunnel.ConnectTimeout, flow.Stopping);
            if (upstream is null)
            {
                flow.Refuse($"connect failed: {error}");
                return;
            }

            flow.Own(upstream);
            await flow.CarryAsync(client, upstream);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.Failed(logger, capture.Workload.Name, ex);
            flow.Fail(ex.Message);
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
