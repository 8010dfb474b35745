using Microsoft.Extensions.Logging;
using NodeMesh.Capture;
using NodeMesh.Contracts;
using NodeMesh.Discovery;
using NodeMesh.Interop;
using NodeMesh.Pods;

namespace NodeMesh.App;

/// <summary>
/// The CNI shim's commands. ADD answers only once the pod is captured (listeners and rules in its namespace), so the
/// runtime starts the pod's containers only then: the application never runs uncaptured.
/// </summary>
internal sealed partial class MeshAgent
{
    /// <summary>How long an ADD waits for the API server to list a pod the kubelet is creating.</summary>
    private static readonly TimeSpan PodListingWait = TimeSpan.FromSeconds(5);

    private async Task<ApiResponse> AddPodAsync(PodInfo? pod, SafeFileDescriptor? handle, CancellationToken cancellationToken)
    {
        try
        {
            if (pod is null)
            {
                return Refused("pod-add needs a 'pod' object");
            }

            if (handle is null)
            {
                return Refused("pod-add needs the pod's network namespace passed as a file descriptor (SCM_RIGHTS)");
            }

            if (NetworkNamespace.NotANetworkNamespace(handle) is { } what)
            {
                return Refused($"pod.netns: the descriptor passed for {Printable.Of(pod.Netns ?? "the pod")} is {what}");
            }

            if (PodAdmission.Errors(pod) is { Count: > 0 } errors)
            {
                return Refused(string.Join("; ", errors));
            }

            PodFacts? facts = podDirectory.KnowsPods ? await podDirectory.FindAsync(pod.Namespace, pod.Name, PodListingWait, cancellationToken) : null;
            await _changeGate.WaitAsync(cancellationToken);
            try
            {
                SafeFileDescriptor owned = handle;
                handle = null;
                return await AdmitUnderGateAsync(pod, owned, facts, cancellationToken);
            }
            finally
            {
                _changeGate.Release();
            }
        }
        finally
        {
            // Unless the capture took it.
            handle?.Dispose();
        }
    }

    /// <summary>Decides on a pod and captures it in <paramref name="handle"/> (owned from now on); the caller holds the change gate.</summary>
    private async Task<ApiResponse> AdmitUnderGateAsync(PodInfo pod, SafeFileDescriptor handle, PodFacts? facts, CancellationToken cancellationToken)
    {
        SafeFileDescriptor? held = handle;
        try
        {
            PodDecision decision = PodAdmission.Decide(pod, podDirectory, facts, config.TrustDomain, config.Node.Name, CniPods(), registry.Current);
            switch (decision)
            {
                case PodDecision.Refuse refuse:
                    return Refused(refuse.Reason);
                case PodDecision.AlreadyCaptured already:
                    return SameNamespace(already.Name, handle) is { } different ? Refused(different) : new ApiResponse { Ok = true, Workloads = ListWorkloads() };
                case PodDecision.Capture capture:
                    foreach (string old in capture.Replaces)
                    {
                        Log.PodReplaced(logger, old, capture.Workload.Name);
                        await RemoveUnderGateAsync(old, cancellationToken);
                    }

                    WorkloadInfo stored;
                    try
                    {
                        // The handle goes to the capture, which closes it when the pod goes.
                        held = null;
                        stored = await CaptureAsync(capture.Workload, handle, cancellationToken);
                    }
                    catch (Exception ex) when (ex is CaptureException or IOException or InvalidOperationException or TimeoutException or InteropException
                        or System.Net.Sockets.SocketException)
                    {
                        return Refused($"capture of pod {pod.Namespace}/{pod.Name} failed: {ex.Message}");
                    }

                    _apiWorkloads[stored.Name] = stored;
                    await stateStore.SaveAsync(_apiWorkloads.Values);
                    Log.PodCaptured(logger, pod.Namespace, pod.Name, pod.ContainerId, stored.Identity);
                    return new ApiResponse { Ok = true, Workloads = ListWorkloads() };
                default:
                    throw new InvalidOperationException($"unknown pod decision {decision}");
            }
        }
        finally
        {
            held?.Dispose();
        }
    }

    private async Task ReconcileInBackgroundAsync(IReadOnlySet<string> excluded, string netnsDirectory, CancellationToken cancellationToken)
    {
        try
        {
            await ReconcilePodsAsync(excluded, netnsDirectory, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped before the first listing came in: nothing to reconcile with.
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // Pods captured through CNI keep being served; the ones left uncaptured show in the log and in `status`.
            Log.ReconcileFailed(logger, ex.Message);
        }
    }

    /// <summary>
    /// Once the API server's first listing is in: forgets CNI pods it no longer places here, and captures pods of
    /// this node that are not captured, found by address among the namespaces in <paramref name="netnsDirectory"/>.
    /// </summary>
    private async Task ReconcilePodsAsync(IReadOnlySet<string> excluded, string netnsDirectory, CancellationToken cancellationToken)
    {
        await registrySource.Synced.WaitAsync(cancellationToken);
        if (podDirectory.PodsOnThisNode() is not { } onThisNode)
        {
            return;
        }

        await _changeGate.WaitAsync(cancellationToken);
        try
        {
            PodReconcilePlan plan = PodReconciliation.Plan(onThisNode, CniPods(), excluded, name => registry.Current.FindByName(name) is { IsLocal: true });
            foreach (string gone in plan.Remove)
            {
                Log.PodGone(logger, gone);
                await RemoveUnderGateAsync(gone, cancellationToken);
            }

            if (plan.Adopt.Count == 0)
            {
                Log.Reconciled(logger, plan.Remove.Count, 0, 0);
                metrics.PodsReconciled(plan.Remove.Count, 0, 0);
                return;
            }

            var captured = registry.Captures.Select(c => c.Thread.Id).ToHashSet();
            List<FoundNamespace> found = await NamespaceScan.ScanAsync(netnsDirectory, id => id == _ownNamespace || captured.Contains(id),
                (path, error) => Log.NamespaceUnreadable(logger, path, error));
            int adopted = 0;
            foreach (FoundNamespace candidate in found)
            {
                using (candidate)
                {
                    if (PodReconciliation.Owner(plan.Adopt, candidate.Addresses) is not { } facts)
                    {
                        continue;
                    }

                    var pod = new PodInfo
                    {
                        Namespace = facts.Namespace,
                        Name = facts.Name,
                        Uid = facts.Uid.Length > 0 ? facts.Uid : null,
                        ContainerId = AdoptedContainerId(facts),
                        Netns = candidate.Path,
                        Ips = [.. facts.Ips.Select(ip => ip.ToString())],
                    };
                    ApiResponse result = await AdmitUnderGateAsync(pod, NetworkNamespace.Open(NetworkNamespace.HeldPath(candidate.Handle)), facts, cancellationToken);
                    if (result.Ok)
                    {
                        adopted++;
                        Log.PodAdopted(logger, facts.Namespace, facts.Name, candidate.Path);
                    }
                    else
                    {
                        Log.PodNotAdopted(logger, facts.Namespace, facts.Name, result.Error ?? "");
                    }
                }
            }

            Log.Reconciled(logger, plan.Remove.Count, adopted, plan.Adopt.Count - adopted);
            metrics.PodsReconciled(plan.Remove.Count, adopted, plan.Adopt.Count - adopted);
        }
        finally
        {
            _changeGate.Release();
        }
    }

    private ApiResponse Counted(string command, ApiResponse response)
    {
        metrics.CniRequest(command, response.Ok);
        return response;
    }

    /// <summary>The container id an adopted pod is registered with: its sandbox's id is not known, its DEL is matched by name.</summary>
    private static string AdoptedContainerId(PodFacts facts) => "adopted-" + (facts.Uid.Length > 0 ? facts.Uid : $"{facts.Namespace}-{facts.Name}");

    private List<WorkloadInfo> CniPods() => [.. _apiWorkloads.Values.Where(w => w.Source == "cni")];

    /// <summary>CNI CHECK: the pod's attachment is captured, in the namespace passed, with every rule in place.</summary>
    private async Task<ApiResponse> CheckPodAsync(PodInfo? pod, SafeFileDescriptor? handle, CancellationToken cancellationToken)
    {
        using (handle)
        {
            if (pod is null || !CniNames.IsContainerId(pod.ContainerId))
            {
                return Refused("pod-check needs a 'pod' object with its containerId");
            }

            WorkloadInfo? registered = _apiWorkloads.Values.FirstOrDefault(w => w.Source == "cni" && w.ContainerId == pod.ContainerId);
            if (registered is null)
            {
                return Refused($"container {pod.ContainerId} is not captured by this agent");
            }

            if (handle is not null && SameNamespace(registered.Name, handle) is { } different)
            {
                return Refused(different);
            }

            WorkloadCapture? capture = registry.Captures.FirstOrDefault(c => c.Workload.Name == registered.Name);
            if (capture is null)
            {
                return Refused($"pod {registered.Name} is registered but not captured");
            }

            return await RuleInstaller.VerifyAsync(capture.Thread, stateDirectory.Owner, cancellationToken) is { } broken
                ? Refused(broken)
                : new ApiResponse { Ok = true };
        }
    }

    /// <summary>CNI DEL: idempotent; a pod the agent does not have is already removed.</summary>
    private async Task<ApiResponse> RemovePodAsync(PodInfo? pod, CancellationToken cancellationToken)
    {
        if (pod is null || !CniNames.IsContainerId(pod.ContainerId))
        {
            return Refused("pod-remove needs a 'pod' object with its containerId");
        }

        await _changeGate.WaitAsync(cancellationToken);
        try
        {
            WorkloadInfo? registered = _apiWorkloads.Values.FirstOrDefault(w => w.Source == "cni" && w.ContainerId == pod.ContainerId)
                ?? (KubernetesNames.IsLabel(pod.Namespace) && KubernetesNames.IsSubdomain(pod.Name)
                    ? _apiWorkloads.Values.FirstOrDefault(w => w.Source == "cni" && w.Name == PodFacts.WorkloadName(pod.Namespace, pod.Name)
                        && w.ContainerId?.StartsWith("adopted-", StringComparison.Ordinal) == true)
                    : null);
            if (registered is not null)
            {
                await RemoveUnderGateAsync(registered.Name, cancellationToken);
                Log.PodRemoved(logger, registered.Name, pod.ContainerId);
            }

            return new ApiResponse { Ok = true };
        }
        finally
        {
            _changeGate.Release();
        }
    }

    /// <summary>CNI GC: pods of containers the runtime no longer has are removed.</summary>
    private async Task<ApiResponse> CollectPodsAsync(IReadOnlyList<string>? valid, CancellationToken cancellationToken)
    {
        if (valid is null)
        {
            return Refused("pod-gc needs 'validContainers'");
        }

        var keep = new HashSet<string>(valid, StringComparer.Ordinal);
        await _changeGate.WaitAsync(cancellationToken);
        try
        {
            foreach (WorkloadInfo gone in _apiWorkloads.Values.Where(w => w.Source == "cni" && !keep.Contains(w.ContainerId ?? "")).ToList())
            {
                await RemoveUnderGateAsync(gone.Name, cancellationToken);
                Log.PodRemoved(logger, gone.Name, gone.ContainerId ?? "");
            }

            return new ApiResponse { Ok = true };
        }
        finally
        {
            _changeGate.Release();
        }
    }

    /// <summary>Null if <paramref name="handle"/> is the namespace the workload is captured in, else why not.</summary>
    private string? SameNamespace(string name, SafeFileDescriptor handle)
    {
        WorkloadCapture? capture = registry.Captures.FirstOrDefault(c => c.Workload.Name == name);
        NamespaceId passed = NetworkNamespace.Identify(handle, name);
        return capture is null ? $"pod {name} is registered but not captured"
            : capture.Thread.Id == passed ? null
            : $"pod {name} is captured in another network namespace ({capture.Thread.Id}) than the one passed ({passed})";
    }

    private static ApiResponse Refused(string error) => new() { Ok = false, Error = error };

    private static partial class Log
    {
        [LoggerMessage(EventId = 30, Level = LogLevel.Information, Message = "pod {Namespace}/{Name} captured (container {ContainerId}, {Identity})")]
        public static partial void PodCaptured(ILogger logger, string @namespace, string name, string containerId, string identity);

        [LoggerMessage(EventId = 31, Level = LogLevel.Information, Message = "pod {Name} removed (container {ContainerId})")]
        public static partial void PodRemoved(ILogger logger, string name, string containerId);

        [LoggerMessage(EventId = 33, Level = LogLevel.Information, Message = "pod {Name}: the API server no longer places it on this node; removed")]
        public static partial void PodGone(ILogger logger, string name);

        [LoggerMessage(EventId = 34, Level = LogLevel.Information, Message = "pod {Namespace}/{Name} was not captured; captured now in {Netns} (found by its address)")]
        public static partial void PodAdopted(ILogger logger, string @namespace, string name, string netns);

        [LoggerMessage(EventId = 35, Level = LogLevel.Warning, Message = "pod {Namespace}/{Name} is on this node but not captured: {Error}")]
        public static partial void PodNotAdopted(ILogger logger, string @namespace, string name, string error);

        [LoggerMessage(EventId = 36, Level = LogLevel.Information, Message = "pods reconciled with the API server: {Removed} removed, {Adopted} captured, {Missing} on this node without a namespace found")]
        public static partial void Reconciled(ILogger logger, int removed, int adopted, int missing);

        [LoggerMessage(EventId = 38, Level = LogLevel.Error, Message = "pods not reconciled with the API server: {Error}")]
        public static partial void ReconcileFailed(ILogger logger, string error);

        [LoggerMessage(EventId = 37, Level = LogLevel.Debug, Message = "namespace {Path} not looked into: {Error}")]
        public static partial void NamespaceUnreadable(ILogger logger, string path, string error);

        [LoggerMessage(EventId = 32, Level = LogLevel.Information, Message = "workload {Old} replaced by pod {New} (a new sandbox, or its address handed out again)")]
        public static partial void PodReplaced(ILogger logger, string old, string @new);
    }
}
