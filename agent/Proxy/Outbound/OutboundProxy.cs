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
using NodeMesh.Telemetry;
using NodeMesh.Tunnel;

namespace NodeMesh.Proxy.Outbound;

/// <summary>
/// Serves a workload's outbound listener: every connection the workload makes arrives here (REDIRECT), is
/// planned from the registry snapshot, and is carried through a tunnel, delivered locally, or passed through.
/// </summary>
internal sealed partial class OutboundProxy(
    WorkloadRegistry registry, TunnelPool pool, FlowRecorder recorder, ConnectionManager connections, AgentConfig config,
    MeshMetrics metrics, ILogger<OutboundProxy> logger)
{
    /// <summary>Endpoints a service flow tries before it is refused (nothing has been sent yet, so a retry is safe).</summary>
    private const int MaxServiceAttempts = 3;

    private readonly AgentEndpoints _agent = AgentEndpoints.From(config);
    private readonly ServiceBalancer _balancer = new();

    public Task RunAsync(WorkloadCapture capture) =>
        ListenerLoop.RunAsync(capture.OutboundListener, "outbound", "local", connections, recorder, (flow, client) => HandleAsync(capture, flow, client), capture.Stopping);

    private async Task HandleAsync(WorkloadCapture capture, Flow flow, Socket client)
    {
        IPEndPoint source;
        IPEndPoint destination;
        IPEndPoint acceptedOn;
        flow.SourceWorkload = capture.Workload;
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
            flow.Refuse($"no original destination ({ex.Message})");
            return;
        }

        flow.Source = source;
        flow.Destination = destination;
        OutboundPlan plan = OutboundPlan.Decide(registry.Current, capture.Workload, destination, config.Node.Name, _agent, acceptedOn, config.Mesh.Cidrs);
        if (plan is OutboundPlan.Unknown unknownYet)
        {
            plan = await AwaitRegistryAsync(unknownYet, capture, destination, acceptedOn, flow.Stopping);
        }

        try
        {
            switch (plan)
            {
                case OutboundPlan.ViaTunnel tunnel:
                    flow.Path = "tunnel";
                    flow.SourceWorkload = tunnel.Source;
                    flow.DestinationWorkload = tunnel.Destination;
                    RefuseIfNotCarried(flow, await ViaTunnelAsync(flow, client, tunnel, destination));
                    break;
                case OutboundPlan.Local local:
                    flow.SourceWorkload = local.Source;
                    flow.DestinationWorkload = local.Destination;
                    RefuseIfNotCarried(flow, await LocalAsync(flow, client, local, destination));
                    break;
                case OutboundPlan.ViaService service:
                    flow.SourceWorkload = service.Source;
                    await ViaServiceAsync(flow, client, service);
                    break;
                case OutboundPlan.Passthrough:
                    flow.Path = "passthrough";
                    await PassthroughAsync(capture, flow, client);
                    break;
                case OutboundPlan.Refuse refuse:
                    Refuse(flow, refuse.Reason);
                    break;
                case OutboundPlan.Unknown unknown:
                    metrics.UnknownMeshDestination();
                    Refuse(flow, $"{destination.Address} is in the mesh ({unknown.Range}, mesh.cidrs) but not in the registry after {Contracts.Duration.Format(config.Mesh.HoldTimeout)}; not sent in plaintext");
                    break;
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A bug or an unexpected failure in one flow must not take the listener down.
            Log.FlowFailed(logger, source.ToString(), destination.ToString(), ex);
            flow.Fail(ex.Message);
        }
    }

    /// <summary>
    /// Holds a flow to an unknown mesh address until the registry changes in a way that places it, or
    /// mesh.holdTimeout passes: a workload just added on another node is reached as soon as its entry arrives.
    /// </summary>
    private async Task<OutboundPlan> AwaitRegistryAsync(OutboundPlan.Unknown first, WorkloadCapture capture, IPEndPoint destination, IPEndPoint acceptedOn,
        CancellationToken stopping)
    {
        OutboundPlan plan = first;
        await registry.WaitUntilAsync(
            snapshot => (plan = OutboundPlan.Decide(snapshot, capture.Workload, destination, config.Node.Name, _agent, acceptedOn, config.Mesh.Cidrs)) is not OutboundPlan.Unknown,
            config.Mesh.HoldTimeout, stopping);
        return plan;
    }

    /// <summary>Why a flow could not be set up (null: it was carried), and whether another endpoint might take it.</summary>
    private readonly record struct Attempt(string? Refusal, bool TryAnother)
    {
        public static readonly Attempt Carried = new(null, false);

        public static Attempt Unhealthy(string reason) => new(reason, true);

        public static Attempt Final(string reason) => new(reason, false);
    }

    private async Task ViaServiceAsync(Flow flow, Socket client, OutboundPlan.ViaService plan)
    {
        var tried = new List<string>();
        var failures = new List<string>();
        MeshService service = plan.Service;
        while (tried.Count < MaxServiceAttempts && _balancer.Pick(service, plan.Endpoints, tried, Random.Shared) is { } endpoint)
        {
            tried.Add(endpoint.Name);
            var target = new IPEndPoint(endpoint.Ip, plan.TargetPort);
            flow.DestinationWorkload = endpoint;
            Attempt attempt;
            using (_balancer.Begin(service, endpoint))
            {
                OutboundPlan step = ForEndpoint(plan.Source, endpoint, target);
                flow.Path = step is OutboundPlan.ViaTunnel ? "tunnel" : "local";
                attempt = step switch
                {
                    OutboundPlan.ViaTunnel tunnel => await ViaTunnelAsync(flow, client, tunnel, target),
                    OutboundPlan.Local local => await LocalAsync(flow, client, local, target),
                    OutboundPlan.Refuse refuse => Attempt.Unhealthy(refuse.Reason),
                    _ => Attempt.Unhealthy($"{endpoint.Name} is not a workload of the mesh"),
                };
            }

            if (attempt.Refusal is null)
            {
                return;
            }

            failures.Add($"{endpoint.Name}: {attempt.Refusal}");
            if (!attempt.TryAnother)
            {
                Refuse(flow, $"service {service.Name} -> {attempt.Refusal}");
                return;
            }

            if (_balancer.MarkDown(service, endpoint))
            {
                metrics.ServiceEndpointEjected(service.Name);
                Log.EndpointDown(logger, service.Name, endpoint.Name, attempt.Refusal, Contracts.Duration.Format(ServiceBalancer.DownFor));
            }

            if (tried.Count < Math.Min(MaxServiceAttempts, plan.Endpoints.Count))
            {
                metrics.ServiceRetried(service.Name);
            }
        }

        Refuse(flow, $"service {service.Name}: no endpoint took the flow ({string.Join("; ", failures)})");
    }

    /// <summary>The plan for one endpoint of a service, from the registry as it is now.</summary>
    private OutboundPlan ForEndpoint(Workload source, Workload endpoint, IPEndPoint target) =>
        OutboundPlan.ForWorkload(registry.Current, source, target, config.Node.Name, meshCidrs: null) switch
        {
            OutboundPlan.Passthrough => new OutboundPlan.Refuse($"{endpoint.Name} is no longer in the registry"),
            var plan => plan,
        };

    private async Task<Attempt> ViaTunnelAsync(Flow flow, Socket client, OutboundPlan.ViaTunnel plan, IPEndPoint target)
    {
        TunnelLease lease;
        try
        {
            lease = await pool.AcquireAsync(plan.Source.Identity, plan.Destination.Node, plan.PeerAgent, flow.Stopping);
        }
        catch (Exception ex) when (ex is SocketException or IOException or System.Security.Authentication.AuthenticationException or OperationCanceledException
            or CertificateUnavailableException)
        {
            return ex is CertificateUnavailableException
                ? Attempt.Final($"no certificate for {plan.Source.Identity}: {ex.Message}")
                : Attempt.Unhealthy($"no tunnel to node {plan.Destination.Node} ({plan.PeerAgent}): {ex.Message}");
        }

        using (lease)
        {
            TunnelStream stream;
            FlowStatus status;
            try
            {
                var header = new FlowHeader(target, flow.Source, FlowTracing.TraceParent(flow.Activity));
                stream = flow.Own(await lease.Connection.OpenFlowAsync(header, flow.Stopping));

                // A peer that stops answering (a partition) must not hold the client until keepalive gives up.
                using var answer = CancellationTokenSource.CreateLinkedTokenSource(flow.Stopping);
                answer.CancelAfter(config.Tunnel.ConnectTimeout);
                try
                {
                    status = await ReadStatusAsync(stream, answer.Token);
                }
                catch (OperationCanceledException) when (!flow.Stopping.IsCancellationRequested)
                {
                    await stream.ResetAsync(TunnelError.Cancelled);
                    throw new IOException($"peer agent did not answer within {Contracts.Duration.Format(config.Tunnel.ConnectTimeout)}");
                }
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
            {
                return Attempt.Unhealthy($"tunnel to node {plan.Destination.Node} failed: {ex.Message}");
            }

            if (status != FlowStatus.Connected)
            {
                await stream.ResetAsync(TunnelError.Cancelled);
                // A denial is the destination's policy, not its health: no other endpoint is tried.
                return status == FlowStatus.Denied ? Attempt.Final($"peer agent answered {status}") : Attempt.Unhealthy($"peer agent answered {status}");
            }

            flow.Encrypted = true;
            await flow.CarryAsync(client, stream);
            return Attempt.Carried;
        }
    }

    private async Task<Attempt> LocalAsync(Flow flow, Socket client, OutboundPlan.Local plan, IPEndPoint target)
    {
        WorkloadCapture? destination = registry.FindCapture(plan.Destination.Ip);
        if (destination is null)
        {
            return Attempt.Unhealthy($"{plan.Destination.Name} is not captured on this node");
        }

        // The source address is bound transparently in the destination's namespace and judged by ipBlocks
        // rules, so it must be the source workload's own (a pod could add an alias address).
        if (!flow.Source.Address.Equals(plan.Source.Ip))
        {
            return Attempt.Final($"source address {flow.Source.Address} is not {plan.Source.Name}'s ({plan.Source.Ip})");
        }

        // Same node, same rules: the destination's policies apply as if the flow had come through a tunnel.
        flow.StopWith(destination.Stopping);
        RegistrySnapshot snapshot = registry.Current;
        var request = new AuthzRequest(snapshot.FindByIp(plan.Destination.Ip) ?? plan.Destination, target.Port, plan.Source.Identity, flow.Source.Address);
        if (!connections.Admit(flow, snapshot, request, "local").Allowed)
        {
            // Admit recorded the denial.
            return Attempt.Carried;
        }

        (Socket? upstream, SocketError error) = await WorkloadDelivery.ConnectAsync(destination, flow.Source, target, config.Tunnel.ConnectTimeout, flow.Stopping);
        if (upstream is null)
        {
            return Attempt.Unhealthy($"connect to {target} failed: {error}");
        }

        flow.Own(upstream);
        await flow.CarryAsync(client, upstream);
        return Attempt.Carried;
    }

    private async Task PassthroughAsync(WorkloadCapture capture, Flow flow, Socket client)
    {
        Socket upstream;
        try
        {
            // Creating the socket fails too when the agent is out of descriptors: refused with the reason.
            upstream = flow.Own(await capture.CreateSocketAsync(transparent: false));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(flow.Stopping);
            timeout.CancelAfter(config.Tunnel.ConnectTimeout);
            await upstream.ConnectAsync(flow.Destination, timeout.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            Refuse(flow, $"connect to {flow.Destination} failed: {ex.Message}");
            return;
        }

        await flow.CarryAsync(client, upstream);
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

    private void RefuseIfNotCarried(Flow flow, Attempt attempt)
    {
        if (attempt.Refusal is { } reason)
        {
            Refuse(flow, reason);
        }
    }

    private void Refuse(Flow flow, string reason)
    {
        Log.Refused(logger, flow.Source.ToString(), flow.SourceWorkload?.Identity.Uri ?? "-", flow.Destination.ToString(), flow.DestinationWorkload?.Identity.Uri ?? "-", reason);
        flow.Refuse(reason);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 100, Level = LogLevel.Warning, Message = "outbound flow {Source} ({SourceIdentity}) -> {Destination} ({DestinationIdentity}) refused: {Reason}")]
        public static partial void Refused(ILogger logger, string source, string sourceIdentity, string destination, string destinationIdentity, string reason);

        [LoggerMessage(EventId = 101, Level = LogLevel.Warning, Message = "captured connection of {Workload} dropped: no original destination ({Error})")]
        public static partial void NoOriginalDestination(ILogger logger, string workload, string error);

        [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "service {Service}: endpoint {Endpoint} marked down for {DownFor} ({Reason}); its flows go to the others")]
        public static partial void EndpointDown(ILogger logger, string service, string endpoint, string reason, string downFor);

        [LoggerMessage(EventId = 102, Level = LogLevel.Error, Message = "outbound flow {Source} -> {Destination} failed")]
        public static partial void FlowFailed(ILogger logger, string source, string destination, Exception exception);
    }
}
