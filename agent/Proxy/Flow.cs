using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using NodeMesh.Authz;
using NodeMesh.Contracts;
using NodeMesh.Copy;
using NodeMesh.State;
using NodeMesh.Telemetry;
using NodeMesh.Tunnel;

namespace NodeMesh.Proxy;

/// <summary>
/// One connection through the agent, from the accept to its record. It is opened by the
/// <see cref="ConnectionManager"/> (so every live flow is in its table, on every path), owns the sockets and
/// tunnel stream handed to it, and ends exactly once, when disposed: with the outcome its handler gave it, or
/// <see cref="FlowOutcome.Failed"/> if the handler gave none (a bug), the sockets closed in order after a clean
/// end and reset otherwise, and one record written.
/// </summary>
internal sealed class Flow : IAsyncDisposable, ITcpTransfer
{
    private static readonly IPEndPoint Unknown = new(IPAddress.Any, 0);

    private readonly ConnectionManager _owner;
    private readonly CancellationTokenSource _stop;
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly List<Socket> _sockets = new(2);
    private readonly List<CancellationTokenRegistration> _stopWith = new(2);
    private TunnelStream? _stream;
    private FlowOutcome? _outcome;
    private string? _detail;
    private readonly TransferCounters _transfer = new();
    private CopyResult _copy;
    private AuthzDecision? _closedBecause;
    private int _closing;
    private int _ended;

    internal Flow(ConnectionManager owner, long id, string direction, string path, string? traceParent, CancellationToken stopping)
    {
        _owner = owner;
        Id = id;
        Direction = direction;
        Path = path;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        Activity = FlowTracing.Start(direction, traceParent);
    }

    /// <summary>The flow's span, when tracing is on.</summary>
    public Activity? Activity { get; }

    public long Id { get; }

    public string Direction { get; }

    /// <summary>How the flow is carried: tunnel, local, passthrough, plaintext (set once the plan is known).</summary>
    public string Path { get; set; }

    public IPEndPoint Source { get; set; } = Unknown;

    public IPEndPoint Destination { get; set; } = Unknown;

    public Workload? SourceWorkload { get; set; }

    public Workload? DestinationWorkload { get; set; }

    /// <summary>The caller's identity as the tunnel proved it (inbound); outbound flows use the source workload's.</summary>
    public string? SourceIdentity { get; set; }

    /// <summary>The caller a gateway authenticated, from the flow header; null for any other flow.</summary>
    public string? RequestPrincipal { get; set; }

    public bool Encrypted { get; set; }

    /// <summary>What the flow was admitted for, once it was (see <see cref="ConnectionManager.Admit"/>).</summary>
    public AuthzRequest? Admitted { get; internal set; }

    /// <summary>Cancelled when the flow must stop: the agent or workload stopping, the tunnel stream reset, a policy change.</summary>
    public CancellationToken Stopping => _stop.Token;

    public FlowOutcome? Outcome => _outcome;

    public bool Ended => Volatile.Read(ref _ended) != 0;

    /// <summary>Its place in the TCP metrics once it carries bytes (set by the owner when the copy starts).</summary>
    internal TcpMetrics.TcpTally? Tally { get; set; }

    /// <summary>Inbound over the tunnel, the pumps' "client" socket is the workload, the destination.</summary>
    private bool ClientIsDestination => Direction == "inbound" && Path == "tunnel";

    long ITcpTransfer.BytesToSource => ClientIsDestination ? _transfer.FromClient : _transfer.ToClient;

    long ITcpTransfer.BytesToDestination => ClientIsDestination ? _transfer.ToClient : _transfer.FromClient;

    /// <summary>Stops the flow also when <paramref name="token"/> is cancelled.</summary>
    public void StopWith(CancellationToken token)
    {
        if (token.CanBeCanceled)
        {
            _stopWith.Add(token.UnsafeRegister(static state => Cancel((CancellationTokenSource)state!), _stop));
        }
    }

    /// <summary>The flow owns <paramref name="socket"/> from now on: it is closed or reset when the flow ends.</summary>
    public Socket Own(Socket socket)
    {
        lock (_sockets)
        {
            _sockets.Add(socket);
        }

        return socket;
    }

    /// <summary>The flow owns <paramref name="stream"/>: reset if the flow fails, and (accepted) its handler counted done at the end.</summary>
    public TunnelStream Own(TunnelStream stream)
    {
        _stream = stream;
        return stream;
    }

    /// <summary>Refused before carrying anything.</summary>
    public void Refuse(string reason) => SetOutcome(FlowOutcome.Refused, reason);

    /// <summary>Refused by authorization.</summary>
    public void Deny(AuthzDecision decision) => SetOutcome(FlowOutcome.Denied, decision.Describe());

    /// <summary>Carries the flow between two sockets until both directions end; the outcome follows from how.</summary>
    public async Task CarryAsync(Socket client, Socket upstream)
    {
        _owner.Carrying(this);
        Carried(await BidirectionalCopy.RunAsync(client, upstream, _transfer, Stopping));
    }

    /// <summary>Carries the flow between a socket and a tunnel stream until both directions end.</summary>
    public async Task CarryAsync(Socket client, TunnelStream stream)
    {
        _owner.Carrying(this);
        Carried(await BidirectionalCopy.RunAsync(client, stream, _transfer, Stopping));
    }

    /// <summary>The copy has ended: the outcome follows from how, and from whether a policy change closed it.</summary>
    internal void Carried(CopyResult copy)
    {
        _copy = copy;
        if (copy.Error is null)
        {
            SetOutcome(FlowOutcome.Ok, null);
        }
        else if (_closedBecause is { } decision)
        {
            SetOutcome(FlowOutcome.ClosedByPolicy, decision.Describe());
        }
        else
        {
            SetOutcome(FlowOutcome.Aborted, copy.Error);
        }
    }

    /// <summary>Ended by the agent's own failure (reported by the handler's last resort).</summary>
    public void Fail(string reason) => SetOutcome(FlowOutcome.Failed, reason);

    /// <summary>Closes the flow because a policy change denies it now. Returns false if it was already closing or ended.</summary>
    internal bool CloseBecause(AuthzDecision decision)
    {
        if (Ended || Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return false;
        }

        _closedBecause = decision;
        Cancel(_stop);
        return true;
    }

    /// <summary>The record of the flow as it stands (written once, at the end).</summary>
    internal FlowRecord ToRecord()
    {
        FlowOutcome outcome = _outcome ?? FlowOutcome.Failed;
        string detail = _detail ?? "the handler ended without an outcome";
        string result = outcome switch
        {
            FlowOutcome.Ok => "ok",
            FlowOutcome.Refused => "refused: " + detail,
            FlowOutcome.Denied => "refused: denied: " + detail,
            FlowOutcome.ClosedByPolicy => "aborted: closed by a policy change: " + detail,
            FlowOutcome.Aborted => "aborted: " + detail,
            _ => "failed: " + detail,
        };

        // Inbound, the pumps' "client" is the workload: bytes sent are the remote caller's.
        bool inbound = ClientIsDestination;
        return new FlowRecord
        {
            Direction = Direction,
            Path = Path,
            Source = Source.ToString(),
            Destination = Destination.ToString(),
            SourceWorkload = SourceWorkload?.Name,
            DestinationWorkload = DestinationWorkload?.Name,
            SourceIdentity = SourceIdentity ?? SourceWorkload?.Identity.Uri,
            RequestPrincipal = RequestPrincipal,
            DestinationIdentity = DestinationWorkload?.Identity.Uri,
            Encrypted = Encrypted,
            BytesSent = inbound ? _copy.BytesToClient : _copy.BytesFromClient,
            BytesReceived = inbound ? _copy.BytesFromClient : _copy.BytesToClient,
            DurationMs = Stopwatch.GetElapsedTime(_started).TotalMilliseconds,
            Outcome = outcome,
            Result = result,
            Ended = DateTimeOffset.UtcNow,
        };
    }

    /// <summary>Ends the flow: releases what it owns and records it. Only the first call does anything.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _ended, 1) != 0)
        {
            return;
        }

        _outcome ??= FlowOutcome.Failed;
        bool clean = _outcome == FlowOutcome.Ok;
        Socket[] sockets;
        lock (_sockets)
        {
            sockets = [.. _sockets];
        }

        foreach (Socket socket in sockets)
        {
            if (clean)
            {
                BidirectionalCopy.Close(socket);
            }
            else
            {
                BidirectionalCopy.Abort(socket);
            }
        }

        if (_stream is { } stream)
        {
            if (_outcome == FlowOutcome.Failed)
            {
                await stream.ResetAsync(TunnelError.Internal);
            }

            stream.HandlerDone();
        }

        foreach (CancellationTokenRegistration registration in _stopWith)
        {
            registration.Dispose();
        }

        _stop.Dispose();
        _owner.Ended(this);
    }

    private void SetOutcome(FlowOutcome outcome, string? detail)
    {
        // The first outcome stands: a refusal is not overwritten by a later copy result, nor a result by a last-resort failure.
        if (_outcome is null)
        {
            _outcome = outcome;
            _detail = detail;
        }
    }

    private static void Cancel(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The flow ended at the same moment.
        }
    }
}
