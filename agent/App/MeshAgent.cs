using System.Net;
using System.Net.Quic;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Api;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;
using NodeMesh.Interop;
using NodeMesh.Proxy;
using NodeMesh.Proxy.Inbound;
using NodeMesh.Proxy.Outbound;
using NodeMesh.State;
using NodeMesh.Telemetry;
using NodeMesh.Tunnel;

namespace NodeMesh.App;

/// <summary>
/// The node agent's lifecycle: identity, tunnel listener, workload captures and the local API, started in
/// that order and stopped in reverse. Stopping closes listeners and drains flows, but leaves every capture
/// rule in place: while the agent is down, captured connections are refused, never sent in plaintext.
/// </summary>
internal sealed partial class MeshAgent(
    AgentConfig config,
    WorkloadRegistry registry,
    ICertificateProvider certificates,
    TunnelPool pool,
    TunnelListenerFactory listenerFactory,
    OutboundProxy outbound,
    InboundPlaintextProxy inboundPlaintext,
    InboundTunnelProxy inboundTunnel,
    ConnectionManager connections,
    FlowLog flowLog,
    AuthzMetrics authzMetrics,
    WorkloadStateStore stateStore,
    StateDirectory stateDirectory,
    MeshMetrics metrics,
    Discovery.IRegistrySource registrySource,
    Discovery.IPodDirectory podDirectory,
    Consumers.ConsumerService consumers,
    ILoggerFactory loggerFactory,
    ILogger<MeshAgent> logger) : IHostedService, IDisposable, Admin.IAgentState
{
    private readonly SemaphoreSlim _changeGate = new(1, 1);
    /// <summary>Workloads registered at run time (the local API and the CNI shim), as saved in the state directory.</summary>
    // Changed under _changeGate, read by listings without it.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, WorkloadInfo> _apiWorkloads = new(StringComparer.Ordinal);
    private readonly List<Task> _loops = [];
    private readonly CancellationTokenSource _stopped = new();
    private TunnelListener? _tunnel;
    private LocalApiServer? _api;
    private NamespaceId _ownNamespace;
    private volatile bool _started;
    private volatile bool _stopping;
    private readonly DateTimeOffset _startedAt = DateTimeOffset.UtcNow;

    private CapturePorts Ports => new(config.Ports.Outbound, config.Ports.InboundPlaintext);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        Log.Transports(logger, "mTLS 1.3 over TCP", QuicConnection.IsSupported ? "available" : "unavailable (libmsquic not found); using mTLS over TCP");

        _ownNamespace = NetworkNamespace.Identify("/proc/self/ns/net");
        registry.Reset(new RegistrySnapshot([], new Dictionary<string, IPEndPoint>(), PolicyCompiler.Compile(config.Policies, config.TrustDomain, [])));
        registrySource.Start();

        // Fail early if the node identity cannot be issued: without it no tunnel can be accepted.
        try
        {
            await certificates.GetNodeCertificateAsync(cancellationToken);
        }
        catch (CertificateUnavailableException ex)
        {
            throw new StartupException($"cannot get this node's certificate ({config.Certificates.Source} source): {ex.Message}", ex);
        }

        try
        {
            _tunnel = listenerFactory.Create(new IPEndPoint(IPAddress.Parse(config.Node.Address), config.Ports.Tunnel), inboundTunnel.ServeAsync);
        }
        catch (System.Net.Sockets.SocketException ex)
        {
            throw new StartupException($"cannot listen on {config.Node.Address}:{config.Ports.Tunnel} (node.address, ports.tunnel): {ex.Message}", ex);
        }

        _tunnel.Start();
        Log.Listening(logger, _tunnel.EndPoint.ToString());

        foreach (WorkloadConfig w in config.Workloads)
        {
            try
            {
                await CaptureAsync(new WorkloadInfo { Name = w.Name, Ip = w.Ip, Identity = w.Identity, Netns = w.Netns, Mode = w.Mode, Labels = w.Labels, Source = "config" }, handle: null, cancellationToken);
            }
            catch (Exception ex) when (ex is CaptureException or IOException or InvalidOperationException or TimeoutException)
            {
                // A configured workload that cannot be captured is a configuration error: refuse to start.
                throw new StartupException($"cannot capture workload '{w.Name}' ({w.Netns}): {ex.Message}", ex);
            }
        }

        foreach (WorkloadInfo saved in await stateStore.LoadAsync())
        {
            if (registry.Current.Workloads.Any(w => w.Name == saved.Name))
            {
                continue;
            }

            try
            {
                _apiWorkloads[saved.Name] = await CaptureAsync(saved with { Source = saved.Source == "cni" ? "cni" : "api" }, handle: null, cancellationToken);
            }
            catch (Exception ex) when (ex is CaptureException or IOException or InvalidOperationException)
            {
                // A saved workload whose namespace is gone is dropped, not fatal: the others keep being served.
                Log.RestoreFailed(logger, saved.Name, ex.Message);
            }
        }

        await stateStore.SaveAsync(_apiWorkloads.Values);
        ApiAccess access;
        try
        {
            access = ApiAccess.ForGroup(config.Api.Group);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new StartupException($"cannot use api.group '{config.Api.Group}': {ex.Message}", ex);
        }

        _api = new LocalApiServer(config.ApiSocket, access, HandleApiAsync, metrics, loggerFactory.CreateLogger<LocalApiServer>());
        try
        {
            _api.Start();
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            throw new StartupException($"cannot serve the local API on {config.ApiSocket} (apiSocket): {ex.Message}", ex);
        }

        if (config.Discovery.Source == DiscoverySource.Kubernetes)
        {
            // After the API is served: the CNI ADDs of new pods are not held up by the scan of the old ones.
            _loops.Add(ReconcileInBackgroundAsync(new HashSet<string>(config.Discovery.Kubernetes.ExcludeNamespaces, StringComparer.Ordinal),
                config.Discovery.Kubernetes.NetnsDirectory, _stopped.Token));
        }

        metrics.ObserveAgent(
            () => registry.Captures.Count,
            () => certificates.Status().Where(c => c.NotAfter is not null).Select(c => (c.Identity.Uri, c.NotAfter!.Value)),
            () => (pool.ConnectionCount, _tunnel?.ConnectionCount ?? 0),
            () =>
            {
                IReadOnlyList<TunnelPeerState> states = pool.Snapshot();
                return registry.Current.PeerNodes.Keys.Select(n => (n, states.Where(s => s.Node == n).All(s => s.Connections > 0 || s.LastError is null)));
            });
        _started = true;
        Log.Ready(logger, config.Node.Name, registry.Captures.Count, config.ApiSocket);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        // Not ready from the first moment of the drain: load balancers and kubelets stop sending new work here.
        _stopping = true;
        await _stopped.CancelAsync();
        if (_api is not null)
        {
            await _api.DisposeAsync();
        }

        // Stop accepting; flows in progress get the drain period to finish.
        foreach (WorkloadCapture capture in registry.Captures)
        {
            capture.OutboundListener.Dispose();
            capture.InboundListener.Dispose();
        }

        // Peers stop opening streams to this agent (and this agent's pool opens none) while the flows in progress drain.
        TimeSpan drain = config.DrainTimeout;
        Task goingAway = Task.WhenAll(_tunnel?.GoAwayAsync(drain, "agent shutting down") ?? Task.CompletedTask, pool.GoAwayAsync(drain, "agent shutting down"));
        // Woken by the last flow's end, not by polling.
        await connections.WhenEmptyAsync().WaitAsync(drain, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        await goingAway.WaitAsync(TimeSpan.FromSeconds(1), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        // Peers forget this node at once instead of at its lease's expiry.
        await registrySource.WithdrawAsync(TimeSpan.FromSeconds(2));
        await registrySource.DisposeAsync();
        Log.Stopped(logger, connections.Count);
        foreach (WorkloadCapture capture in registry.Captures)
        {
            await capture.DisposeAsync();
        }

        if (_tunnel is not null)
        {
            await _tunnel.DisposeAsync();
        }

        await pool.DisposeAsync();
        await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Captures the workload; returns its registration with the identity of the namespace captured.</summary>
    /// <param name="handle">The namespace handed over by the CNI shim (owned from now on), or null to open <see cref="WorkloadInfo.Netns"/>.</param>
    private async Task<WorkloadInfo> CaptureAsync(WorkloadInfo info, SafeFileDescriptor? handle, CancellationToken cancellationToken)
    {
        PeerMode mode = ConfigLoader.ParseMode(info.Mode);
        var workload = new Workload(info.Name, IPAddress.Parse(info.Ip), SpiffeId.Parse(info.Identity), config.Node.Name, info.Netns)
        {
            Mode = mode,
            Labels = info.Labels ?? new Dictionary<string, string>(),
        };
        NamespaceId? expected = info.NetnsInode is ulong inode && info.NetnsDevice is ulong device ? new NamespaceId(device, inode) : null;
        WorkloadCapture capture = await WorkloadCapture.StartAsync(workload, handle, Ports, stateDirectory.Owner,
            found =>
            {
                if (WorkloadNamespace.Refusal(info.Name, info.Netns, found, expected, _ownNamespace) is { } refusal)
                {
                    throw new CaptureException(refusal);
                }
            },
            cancellationToken);
        registry.Add(capture);
        registrySource.Publish(workload);

        // Fetched now, not at the first flow: the first connection does not wait for the CA, and a failure shows in `status` at once.
        _ = PrefetchCertificateAsync(workload);
        _loops.Add(outbound.RunAsync(capture));
        _loops.Add(inboundPlaintext.RunAsync(capture));
        Log.Captured(logger, workload.Name, workload.Ip.ToString(), workload.Identity.Uri, info.Netns);
        Log.Ipv6(logger, workload.Name, capture.Ipv6 == Ipv6Plan.Refuse ? "refused on every interface but lo (no IPv6 mesh address)" : "off in the namespace: nothing to refuse");
        return info with { NetnsInode = capture.Thread.Id.Inode, NetnsDevice = capture.Thread.Id.Device };
    }

    private async Task<ApiResponse> HandleApiAsync(ApiCall call, CancellationToken cancellationToken)
    {
        ApiRequest request = call.Request;
        if (call.DescriptorCount > 0 && request.Command is not ("pod-add" or "pod-check"))
        {
            return new ApiResponse { Ok = false, Error = $"'{Contracts.Printable.Of(request.Command)}' takes no file descriptor" };
        }

        switch (request.Command)
        {
            case "pod-add":
                return Counted(request.Command, await AddPodAsync(request.Pod, call.TakeDescriptor(), cancellationToken));
            case "pod-check":
                return Counted(request.Command, await CheckPodAsync(request.Pod, call.TakeDescriptor(), cancellationToken));
            case "pod-remove":
                return Counted(request.Command, await RemovePodAsync(request.Pod, cancellationToken));
            case "pod-gc":
                return Counted(request.Command, await CollectPodsAsync(request.ValidContainers, cancellationToken));
            case "ready":
                return NotReady() is { Count: > 0 } missing
                    ? new ApiResponse { Ok = false, Error = "not ready: " + string.Join("; ", missing) }
                    : new ApiResponse { Ok = true };
            case "workload-add":
                return await AddAsync(request.Workload, cancellationToken);
            case "workload-remove":
                return await RemoveAsync(request.Name, cancellationToken);
            case "workload-list":
                return new ApiResponse { Ok = true, Workloads = ListWorkloads() };
            case "flows":
                long cursor = flowLog.Latest;
                return new ApiResponse { Ok = true, Flows = flowLog.Snapshot(request.Since ?? 0), FlowCursor = cursor };
            case "status":
                return new ApiResponse
                {
                    Ok = true,
                    Status = new AgentStatus
                    {
                        Node = config.Node.Name,
                        Version = AgentVersion.Current,
                        TunnelConnections = pool.ConnectionCount + (_tunnel?.ConnectionCount ?? 0),
                        TunnelConnectionsOpened = pool.ConnectionsOpened,
                        ActiveFlows = connections.Count,
                        FlowsRefused = flowLog.Refused,
                        FlowsDenied = authzMetrics.Denied,
                        FlowsDryRunDenied = authzMetrics.DryRunDenied,
                        ApiCallersRefused = metrics.ApiCallersRefused,
                        Policies = registry.Current.Policies.Policies.Count,
                        Transports = QuicConnection.IsSupported ? ["mtls-tcp", "quic"] : ["mtls-tcp"],
                        ManagedHeapBytes = GC.GetGCMemoryInfo().HeapSizeBytes,
                        ManagedCommittedBytes = GC.GetGCMemoryInfo().TotalCommittedBytes,
                        ResidentBytes = Environment.WorkingSet,
                        Certificates = CertificateInfos(),
                        StartedAt = _startedAt,
                        FlowsRecorded = flowLog.Latest,
                        Listener = ListenerStatus(),
                        Peers = PeerStatuses(),
                        Workloads = ListWorkloads(),
                        Registry = registrySource.Status(),
                    },
                };
            case var command when Consumers.ConsumerService.Handles(command):
                return await consumers.HandleAsync(command, request.Consumer, cancellationToken);
            default:
                return new ApiResponse { Ok = false, Error = $"unknown command '{Contracts.Printable.Of(request.Command)}'" };
        }
    }

    private async Task PrefetchCertificateAsync(Workload workload)
    {
        try
        {
            await certificates.GetWorkloadCertificateAsync(workload.Identity, CancellationToken.None);
        }
        catch (Exception ex) when (ex is CertificateUnavailableException or ObjectDisposedException or IOException)
        {
            // Its flows are refused until one is had (fail closed); the provider keeps trying and `status` says why.
            Log.CertificateNotReady(logger, workload.Name, workload.Identity.Uri, ex.Message);
        }
    }

    private Dictionary<SpiffeId, CertificateStatus> CertificatesByIdentity()
    {
        var byIdentity = new Dictionary<SpiffeId, CertificateStatus>();
        foreach (CertificateStatus status in certificates.Status())
        {
            byIdentity[status.Identity] = status;
        }

        return byIdentity;
    }

    private static string DescribeCertificate(CertificateStatus? status, DateTimeOffset now) => status switch
    {
        { NotAfter: { } notAfter } when notAfter > now => $"valid until {notAfter:u}",
        { LastError: { } error } => "unavailable: " + error,
        { NotAfter: { } expired } => $"expired at {expired:u}",
        _ => "pending",
    };

    private List<CertificateInfo> CertificateInfos() =>
        [.. certificates.Status().OrderBy(s => s.Identity.Uri, StringComparer.Ordinal).Select(s => new CertificateInfo
        {
            Identity = s.Identity.Uri,
            NotAfter = s.NotAfter,
            Error = s.LastError,
            Kind = s.Identity.Namespace == MeshIdentities.Namespace ? "node" : "workload",
        })];

    private TunnelListenerStatus? ListenerStatus()
    {
        if (_tunnel is null)
        {
            return null;
        }

        IReadOnlyList<TunnelConnectionState> accepted = _tunnel.Snapshot();
        return new TunnelListenerStatus { Address = _tunnel.EndPoint.ToString(), Connections = accepted.Count, Streams = accepted.Sum(c => c.Streams), Accepted = accepted };
    }

    /// <summary>Every peer node the registry routes to, with the pool's tunnels to it summed over source identities.</summary>
    private List<PeerStatus> PeerStatuses()
    {
        ILookup<string, TunnelPeerState> tunnels = pool.Snapshot().ToLookup(t => t.Node, StringComparer.Ordinal);
        return registry.Current.PeerNodes.OrderBy(n => n.Key, StringComparer.Ordinal).Select(node =>
        {
            List<TunnelPeerState> mine = [.. tunnels[node.Key]];
            int open = mine.Sum(t => t.Connections);
            TunnelPeerState? failing = mine.Where(t => t.RetryAt is not null).MaxBy(t => t.RetryAt);
            return new PeerStatus
            {
                Node = node.Key,
                Address = node.Value.ToString(),
                Connections = open,
                Streams = mine.Sum(t => t.Streams),
                State = open > 0 ? "connected" : mine.Any(t => t.Dialling) ? "dialling" : failing is not null ? "backoff"
                    : mine.Any(t => t.LastError is not null) ? "failing" : "idle",
                LastError = mine.Select(t => t.LastError).FirstOrDefault(e => e is not null),
                RetryAt = failing?.RetryAt,
                Tunnels = mine,
            };
        }).ToList();
    }

    private List<WorkloadInfo> ListWorkloads()
    {
        Dictionary<SpiffeId, CertificateStatus> held = CertificatesByIdentity();
        DateTimeOffset now = DateTimeOffset.UtcNow;
        // A workload captured but not yet registered (an ADD in progress) is left out until its registration is complete.
        return registry.Current.Workloads.Where(w => w.IsLocal && (_apiWorkloads.ContainsKey(w.Name) || config.Workloads.Any(c => c.Name == w.Name)))
            .OrderBy(w => w.Name, StringComparer.Ordinal).Select(w => new WorkloadInfo
        {
            Name = w.Name,
            Ip = w.Ip.ToString(),
            Identity = w.Identity.Uri,
            Netns = w.Netns!,
            Mode = w.Mode == PeerMode.Strict ? "STRICT" : "PERMISSIVE",
            Labels = w.Labels,
            Source = _apiWorkloads.GetValueOrDefault(w.Name)?.Source ?? "config",
            ContainerId = _apiWorkloads.GetValueOrDefault(w.Name)?.ContainerId,
            PodUid = _apiWorkloads.GetValueOrDefault(w.Name)?.PodUid,
            Certificate = DescribeCertificate(held.GetValueOrDefault(w.Identity), now),
            Capture = DescribeCapture(w),
        }).ToList();
    }

    private string DescribeCapture(Workload workload)
    {
        WorkloadCapture? capture = registry.FindCapture(workload.Ip);
        return capture is null ? "none"
            : capture.Ipv6 == Ipv6Plan.Refuse ? "installed (IPv6 refused)" : "installed (IPv6 off)";
    }

    private async Task<ApiResponse> AddAsync(WorkloadInfo? info, CancellationToken cancellationToken)
    {
        if (info is null)
        {
            return new ApiResponse { Ok = false, Error = "workload-add needs a 'workload' object" };
        }

        List<string> errors = ConfigLoader.WorkloadErrors(info.Name, info.Ip, info.Identity, info.Netns ?? "", config.TrustDomain)
            .Concat(ConfigLoader.WorkloadPolicyErrors(info.Mode, info.Labels)).ToList();
        if (errors.Count == 0 && !File.Exists(info.Netns))
        {
            errors.Add($"netns: {info.Netns} does not exist");
        }

        await _changeGate.WaitAsync(cancellationToken);
        try
        {
            RegistrySnapshot current = registry.Current;
            if (current.Workloads.Any(w => w.Name == info.Name))
            {
                errors.Add($"name: a workload named '{info.Name}' is already registered");
            }
            else if (IPAddress.TryParse(info.Ip, out IPAddress? ip) && current.FindByIp(ip) is { } other)
            {
                errors.Add($"ip: {info.Ip} already belongs to workload '{other.Name}'");
            }

            if (info.Netns is not null && current.Workloads.FirstOrDefault(w => w.IsLocal && w.Netns == info.Netns) is { } sharing)
            {
                errors.Add($"netns: {info.Netns} is already captured for workload '{sharing.Name}' (one workload per namespace)");
            }

            if (errors.Count > 0)
            {
                return new ApiResponse { Ok = false, Error = string.Join("; ", errors) };
            }

            WorkloadInfo stored;
            try
            {
                stored = await CaptureAsync(info with { Source = "api" }, handle: null, cancellationToken);
            }
            catch (Exception ex) when (ex is CaptureException or IOException or InvalidOperationException or TimeoutException)
            {
                return new ApiResponse { Ok = false, Error = $"capture of {info.Name} failed: {ex.Message}" };
            }
            catch (System.Net.Sockets.SocketException ex) when (ex.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse)
            {
                // The same namespace under another path (/proc/PID/ns/net for /var/run/netns/x): its listeners exist.
                return new ApiResponse { Ok = false, Error = $"netns: capture of {info.Name} failed, the agent's ports are taken in {info.Netns} (is it already captured?): {ex.Message}" };
            }

            _apiWorkloads[info.Name] = stored;
            await stateStore.SaveAsync(_apiWorkloads.Values);
            return new ApiResponse { Ok = true, Workloads = ListWorkloads() };
        }
        finally
        {
            _changeGate.Release();
        }
    }

    private async Task<ApiResponse> RemoveAsync(string? name, CancellationToken cancellationToken)
    {
        await _changeGate.WaitAsync(cancellationToken);
        try
        {
            return await RemoveUnderGateAsync(name, cancellationToken)
                ? new ApiResponse { Ok = true, Workloads = ListWorkloads() }
                : new ApiResponse { Ok = false, Error = $"no local workload named '{Contracts.Printable.Of(name ?? "")}'" };
        }
        finally
        {
            _changeGate.Release();
        }
    }

    /// <summary>Removes a local workload (the caller holds the change gate); false if there is none of that name.</summary>
    private async Task<bool> RemoveUnderGateAsync(string? name, CancellationToken cancellationToken)
    {
        WorkloadCapture? capture = name is null ? null : registry.Remove(name);
        if (capture is null)
        {
            return false;
        }

        // Rules first, while the namespace handle is still held: they are removed from that namespace, not the path's.
        bool removed;
        try
        {
            removed = await RuleInstaller.RemoveAsync(capture.Thread, stateDirectory.Owner, cancellationToken);
        }
        finally
        {
            await capture.DisposeAsync();
        }

        if (!removed)
        {
            Log.RulesOfAnotherAgent(logger, name!, capture.Thread.NetnsPath);
        }

        _apiWorkloads.TryRemove(name!, out _);
        registrySource.Unpublish(name!);
        await stateStore.SaveAsync(_apiWorkloads.Values);

        // Replicas share an identity: its certificate goes with the last local workload that has it.
        SpiffeId identity = capture.Workload.Identity;
        if (!registry.Current.Workloads.Any(w => w.IsLocal && w.Identity == identity))
        {
            certificates.Forget(identity);
        }

        // Its metric series go with it (a scrape no longer shows a workload that is not there).
        metrics.Tcp.DropWorkload(name!);
        Log.Removed(logger, name!);
        return true;
    }

    public void Dispose()
    {
        _changeGate.Dispose();
        certificates.Dispose();
    }

    public Task<ApiResponse> QueryAsync(string command, CancellationToken cancellationToken) =>
        command is "status" or "workload-list" or "flows"
            ? QueryCoreAsync(command, cancellationToken)
            : throw new ArgumentException($"'{command}' is not a read-only query", nameof(command));

    private async Task<ApiResponse> QueryCoreAsync(string command, CancellationToken cancellationToken)
    {
        using var call = new ApiCall(new ApiRequest { Command = command }, []);
        return await HandleApiAsync(call, cancellationToken);
    }

    public IReadOnlyList<Admin.CertificateView> Certificates()
    {
        DateTimeOffset now = DateTimeOffset.UtcNow;
        return [.. certificates.Status().OrderBy(s => s.Identity.Uri, StringComparer.Ordinal).Select(s => new Admin.CertificateView
        {
            Identity = s.Identity.Uri,
            State = s switch
            {
                { NotAfter: { } notAfter } when notAfter > now => "valid",
                { LastError: not null } => "unavailable",
                { NotAfter: not null } => "expired",
                _ => "pending",
            },
            Serial = s.Leaf?.SerialNumber,
            Issuer = s.Leaf?.Issuer,
            NotBefore = s.Leaf is { } leaf ? new DateTimeOffset(leaf.NotBefore.ToUniversalTime(), TimeSpan.Zero) : null,
            NotAfter = s.NotAfter,
            Error = s.LastError,
        })];
    }

    public IReadOnlyList<Admin.PolicyView> Policies() =>
        [.. registry.Current.Policies.Policies.Select(p => new Admin.PolicyView
        {
            Name = p.Name,
            Action = p.Action == PolicyAction.Allow ? "ALLOW" : "DENY",
            DryRun = p.DryRun,
            Selector = DescribeSelector(p.Selector),
            Rules = p.Rules.Count,
        })];

    public IReadOnlyList<string> NotReady()
    {
        var missing = new List<string>();
        if (_stopping)
        {
            missing.Add("the agent is stopping (draining its flows)");
            return missing;
        }

        if (!_started)
        {
            missing.Add("the agent is starting");
            return missing;
        }

        DateTimeOffset now = DateTimeOffset.UtcNow;
        Dictionary<SpiffeId, CertificateStatus> held = CertificatesByIdentity();
        SpiffeId node = MeshIdentities.Node(config.TrustDomain, config.Node.Name);
        if (held.GetValueOrDefault(node) is not { NotAfter: { } nodeExpiry } || nodeExpiry <= now)
        {
            missing.Add($"node certificate {node}: {DescribeCertificate(held.GetValueOrDefault(node), now)}");
        }

        if (_tunnel is null)
        {
            missing.Add($"tunnel listener on {config.Node.Address}:{config.Ports.Tunnel}");
        }

        if (!registrySource.Synced.IsCompleted)
        {
            missing.Add($"registry: not listed from {config.Discovery.Source.ToString().ToLowerInvariant()} yet ({registrySource.Status().LastError ?? "connecting"})");
        }

        foreach (WorkloadConfig w in config.Workloads)
        {
            if (!registry.Captures.Any(c => c.Workload.Name == w.Name))
            {
                missing.Add($"workload {w.Name}: not captured");
            }
        }

        foreach (Workload w in registry.Current.Workloads.Where(w => w.IsLocal))
        {
            if (held.GetValueOrDefault(w.Identity) is not { NotAfter: { } expiry } || expiry <= now)
            {
                missing.Add($"workload {w.Name}: certificate for {w.Identity} {DescribeCertificate(held.GetValueOrDefault(w.Identity), now)}");
            }
        }

        return missing;
    }

    public string ConfigJson() => System.Text.Json.JsonSerializer.Serialize(config, ConfigJsonContext.Default.AgentConfig);

    private static string DescribeSelector(PolicySelector selector)
    {
        var parts = new List<string>();
        if (selector.Namespace is not null)
        {
            parts.Add($"namespace {selector.Namespace}");
        }

        if (selector.Labels is { Count: > 0 } labels)
        {
            parts.Add("labels " + string.Join(",", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}")));
        }

        if (selector.Identities is { Count: > 0 } identities)
        {
            parts.Add("identities " + string.Join(",", identities.Select(i => i.Uri).Order(StringComparer.Ordinal)));
        }

        return parts.Count == 0 ? "every workload" : string.Join("; ", parts);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "transports: {Tcp}; QUIC {Quic}")]
        public static partial void Transports(ILogger logger, string tcp, string quic);

        [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "tunnel listener on {EndPoint}")]
        public static partial void Listening(ILogger logger, string endPoint);

        [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "node {Node} ready: {Count} workloads captured, local API on {Socket}")]
        public static partial void Ready(ILogger logger, string node, int count, string socket);

        [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "captured workload {Name} ({Ip}, {Identity}) in {Netns}")]
        public static partial void Captured(ILogger logger, string name, string ip, string identity, string netns);

        [LoggerMessage(EventId = 5, Level = LogLevel.Information, Message = "removed workload {Name}: rules and listeners gone")]
        public static partial void Removed(ILogger logger, string name);

        [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "saved workload {Name} not restored: {Error}")]
        public static partial void RestoreFailed(ILogger logger, string name, string error);

        [LoggerMessage(EventId = 8, Level = LogLevel.Warning, Message = "workload {Name} removed, but the rules in {Netns} belong to another running agent and were left alone")]
        public static partial void RulesOfAnotherAgent(ILogger logger, string name, string netns);

        [LoggerMessage(EventId = 7, Level = LogLevel.Information, Message = "stopped; {Active} flows still open were closed")]
        public static partial void Stopped(ILogger logger, int active);

        [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "workload {Name}: no certificate for {Identity} yet ({Error}); its flows are refused until there is one")]
        public static partial void CertificateNotReady(ILogger logger, string name, string identity, string error);

        [LoggerMessage(EventId = 20, Level = LogLevel.Information, Message = "workload {Name}: IPv6 TCP {Ipv6}")]
        public static partial void Ipv6(ILogger logger, string name, string ipv6);
    }
}
