using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using Nerdbank.Streams;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Copy;
using NodeMesh.State;
using NodeMesh.Tunnel;

namespace NodeMesh.Proxy.Inbound;

/// <summary>
/// Serves the flows of one accepted tunnel connection: reads each flow's header, checks it names a workload
/// on this node that the caller's identity may reach (the header can never redirect traffic elsewhere),
/// answers with a status byte, then delivers the flow into the destination's namespace.
/// </summary>
internal sealed partial class InboundTunnelProxy(WorkloadRegistry registry, FlowRecorder recorder, AgentConfig config, ILogger<InboundTunnelProxy> logger)
{
    private static readonly TimeSpan HeaderTimeout = TimeSpan.FromSeconds(10);

    public async Task ServeAsync(TunnelConnection connection, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            MultiplexingStream.Channel? channel = await connection.AcceptFlowAsync(cancellationToken);
            if (channel is null)
            {
                return;
            }

            _ = HandleFlowAsync(connection, channel, cancellationToken);
        }
    }

    private async Task HandleFlowAsync(TunnelConnection connection, MultiplexingStream.Channel flow, CancellationToken cancellationToken)
    {
        recorder.Begin();
        try
        {
            await HandleFlowCoreAsync(connection, flow, cancellationToken);
        }
        finally
        {
            recorder.End();
        }
    }

    private async Task HandleFlowCoreAsync(TunnelConnection connection, MultiplexingStream.Channel flow, CancellationToken cancellationToken)
    {
        long started = Stopwatch.GetTimestamp();
        string peer = connection.PeerIdentity.Uri;
        FlowHeader header;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(HeaderTimeout);
            (header, string? error) = await ReadHeaderAsync(flow.Input, timeout.Token);
            if (error is not null)
            {
                Log.MalformedHeader(logger, peer, error);
                recorder.Record("inbound", "tunnel", new IPEndPoint(IPAddress.Any, 0), new IPEndPoint(IPAddress.Any, 0), null, null, peer, encrypted: true, started, default, "malformed flow header: " + error);
                await AnswerAndCloseAsync(flow, FlowStatus.MalformedHeader);
                return;
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
        {
            flow.Dispose();
            return;
        }

        RegistrySnapshot snapshot = registry.Current;
        Workload? sourceWorkload = snapshot.FindByIp(header.Source.Address);
        WorkloadCapture? target = registry.FindCapture(header.Destination.Address);
        string? refusal = CheckFlow(header, connection, sourceWorkload, target);
        if (refusal is not null)
        {
            Log.Refused(logger, header.Source.ToString(), peer, header.Destination.ToString(), refusal);
            recorder.Record("inbound", "tunnel", header.Source, header.Destination, sourceWorkload, target?.Workload, peer, encrypted: true, started, default, refusal);
            await AnswerAndCloseAsync(flow, refusal.StartsWith("denied", StringComparison.Ordinal) ? FlowStatus.Denied : FlowStatus.NotLocalWorkload);
            return;
        }

        using var flowStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, target!.Stopping);
        var (socket, socketError) = await WorkloadDelivery.ConnectAsync(target, header.Source, header.Destination, flowStop.Token);
        if (socket is null)
        {
            string reason = $"connect to {header.Destination} failed: {socketError}";
            recorder.Record("inbound", "tunnel", header.Source, header.Destination, sourceWorkload, target.Workload, peer, encrypted: true, started, default, reason);
            await AnswerAndCloseAsync(flow, socketError == System.Net.Sockets.SocketError.ConnectionRefused ? FlowStatus.ConnectRefused : FlowStatus.ConnectFailed);
            return;
        }

        try
        {
            await WriteStatusAsync(flow.Output, FlowStatus.Connected, flowStop.Token);
            CopyResult copy = await BidirectionalCopy.RunAsync(socket, flow, flowStop.Token);
            if (copy.Error is null)
            {
                BidirectionalCopy.Close(socket);
            }
            else
            {
                BidirectionalCopy.Abort(socket);
            }

            // Bytes "sent" are from the remote client to the workload: the pumps' client side is the workload here.
            recorder.Record("inbound", "tunnel", header.Source, header.Destination, sourceWorkload, target.Workload, peer, encrypted: true, started,
                copy with { BytesFromClient = copy.BytesToClient, BytesToClient = copy.BytesFromClient });
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
        {
            BidirectionalCopy.Abort(socket);
            flow.Dispose();
        }
    }

    /// <summary>The checks a flow must pass before anything is connected. Returns null when it may proceed.</summary>
    internal string? CheckFlow(FlowHeader header, TunnelConnection connection, Workload? sourceWorkload, WorkloadCapture? target)
    {
        if (target is null)
        {
            return $"destination {header.Destination.Address} is not a workload on this node";
        }

        int port = header.Destination.Port;
        if (port == config.Ports.Outbound || port == config.Ports.InboundPlaintext || port == config.Ports.Tunnel)
        {
            return $"destination port {port} is one of the agent's own ports";
        }

        // The source address is bound transparently in the workload's namespace, so it must really be the caller's.
        if (sourceWorkload is null)
        {
            return $"source {header.Source.Address} is not a known mesh workload";
        }

        if (sourceWorkload.Identity != connection.PeerIdentity)
        {
            return $"source {header.Source.Address} belongs to {sourceWorkload.Identity}, but the caller is {connection.PeerIdentity}";
        }

        return null;
    }

    internal static async Task<(FlowHeader Header, string? Error)> ReadHeaderAsync(PipeReader input, CancellationToken cancellationToken)
    {
        ReadResult result = await input.ReadAtLeastAsync(FlowHeader.FixedLength, cancellationToken);
        if (result.Buffer.Length < FlowHeader.FixedLength)
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return (default, $"stream ended after {result.Buffer.Length} bytes of the header");
        }

        Span<byte> prefix = stackalloc byte[FlowHeader.FixedLength];
        result.Buffer.Slice(0, FlowHeader.FixedLength).CopyTo(prefix);
        if (!FlowHeader.TryGetLength(prefix, out int length, out string? error))
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return (default, error);
        }

        if (result.Buffer.Length < length)
        {
            // Everything buffered was examined: the next read waits for the rest of the header.
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            result = await input.ReadAtLeastAsync(length, cancellationToken);
        }

        if (result.Buffer.Length < length)
        {
            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            return (default, $"stream ended after {result.Buffer.Length} of {length} header bytes");
        }

        byte[] bytes = result.Buffer.Slice(0, length).ToArray();
        input.AdvanceTo(result.Buffer.GetPosition(length));
        return FlowHeader.TryParse(bytes, out FlowHeader header, out error) ? (header, null) : (default, error);
    }

    private static async Task WriteStatusAsync(PipeWriter output, FlowStatus status, CancellationToken cancellationToken)
    {
        output.GetSpan(1)[0] = (byte)status;
        output.Advance(1);
        await output.FlushAsync(cancellationToken);
    }

    private static async Task AnswerAndCloseAsync(MultiplexingStream.Channel flow, FlowStatus status)
    {
        try
        {
            await WriteStatusAsync(flow.Output, status, CancellationToken.None);
            await flow.Output.CompleteAsync();
            await flow.Input.CompleteAsync();
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or InvalidOperationException)
        {
            flow.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "inbound flow {Source} ({SourceIdentity}) -> {Destination} refused: {Reason}")]
        public static partial void Refused(ILogger logger, string source, string sourceIdentity, string destination, string reason);

        [LoggerMessage(EventId = 201, Level = LogLevel.Warning, Message = "malformed flow header from {SourceIdentity}: {Error}")]
        public static partial void MalformedHeader(ILogger logger, string sourceIdentity, string error);
    }
}
