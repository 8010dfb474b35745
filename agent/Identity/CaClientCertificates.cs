using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Identity;

/// <summary>
/// Certificates from the mesh CA. The node joins with its join token on first use, then renews its node
/// certificate with itself. With a <see cref="NodeIdentityStore"/>, every node certificate issued is stored, and
/// a stored one that is still valid and chains to the trust bundle is used at start and renewed at once, so a
/// restart needs no join token (join tokens are single-use and short-lived); every workload identity gets its own certificate, asked for with the node
/// certificate. Invariants: one renewal loop per identity, started on first use and stopped by
/// <see cref="Forget"/> or disposal; the loop renews at about half the lifetime (with jitter), and after a
/// failure retries with exponential backoff while callers keep the current certificate until it expires. Each
/// issuance uses a fresh key made in this process (only the node's is written down, to the store). A renewal publishes a new
/// <see cref="SslStreamCertificateContext"/>: new tunnel connections use it, existing ones keep theirs.
/// With no valid certificate and a failed last attempt, callers get <see cref="CertificateUnavailableException"/>
/// at once (fail closed, and no stampede on a CA that is down).
/// </summary>
internal sealed partial class CaClientCertificates : ICertificateProvider
{
    private readonly CaClient _client;
    private readonly string _nodeName;
    private readonly Func<string?> _joinToken;
    private readonly TrustBundle _bundle;
    private readonly RenewalSchedule _schedule;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _disposed = new();
    private readonly ConcurrentDictionary<SpiffeId, Slot> _workloads = new();
    private readonly Slot _node;
    private readonly NodeIdentityStore? _store;
    private readonly System.Diagnostics.Metrics.Meter _meter = new("NodeMesh.Identity");
    private readonly System.Diagnostics.Metrics.Counter<long> _storeFailures;

    /// <param name="joinToken">The node's join token, read when the node must (re)join: at start, or when its certificate expired.</param>
    /// <param name="trustBundle">The roots the CA must chain to; replaced by the roots the CA sends with each certificate.</param>
    /// <param name="store">Where the node certificate is kept across restarts; null keeps it in memory only.</param>
    public CaClientCertificates(CaClient client, string nodeName, Func<string?> joinToken, TrustBundle trustBundle, RenewalSchedule schedule,
        ILogger<CaClientCertificates> logger, TimeProvider? time = null, NodeIdentityStore? store = null)
    {
        _client = client;
        _nodeName = nodeName;
        _joinToken = joinToken;
        _bundle = trustBundle;
        _schedule = schedule;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        NodeIdentity = MeshIdentities.Node(client.TrustDomain, nodeName);
        _node = new Slot(NodeIdentity);
        _store = store;
        _storeFailures = _meter.CreateCounter<long>("nodemesh_node_identity_store_failures_total",
            description: "Failures to read or write the stored node certificate (a restart then needs a new join token).");
        _node.Current = LoadStored();
    }

    /// <summary>Raised after each certificate issued (the first and every renewal).</summary>
    public event Action<SpiffeId, X509Certificate2>? CertificateIssued;

    /// <summary>Raised after each failed request, with the reason.</summary>
    public event Action<SpiffeId, string>? IssuanceFailed;

    /// <summary>This node's identity, <c>spiffe://&lt;td&gt;/ns/nodemesh-system/sa/node.&lt;name&gt;</c>.</summary>
    public SpiffeId NodeIdentity { get; }

    public X509Certificate2Collection TrustBundle => _bundle.Roots;

    public TrustBundle Bundle => _bundle;

    /// <summary>Joins (if not yet joined) and waits for the node certificate; throws if that fails.</summary>
    public async Task StartAsync(CancellationToken cancellationToken) => await GetNodeCertificateAsync(cancellationToken);

    public ValueTask<SslStreamCertificateContext> GetNodeCertificateAsync(CancellationToken cancellationToken) =>
        GetAsync(_node, cancellationToken);

    public ValueTask<SslStreamCertificateContext> GetWorkloadCertificateAsync(SpiffeId identity, CancellationToken cancellationToken)
    {
        if (identity == NodeIdentity)
        {
            return GetAsync(_node, cancellationToken);
        }

        ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
        return GetAsync(_workloads.GetOrAdd(identity, static id => new Slot(id)), cancellationToken);
    }

    /// <summary>Stops renewing <paramref name="identity"/> (its workload left the node) and drops its certificate.</summary>
    public void Forget(SpiffeId identity)
    {
        if (_workloads.TryRemove(identity, out Slot? slot))
        {
            slot.Dispose();
        }
    }

    public IReadOnlyList<CertificateStatus> Status() =>
        [.. new[] { _node }.Concat(_workloads.Values).Select(s => new CertificateStatus(s.Identity, s.Current?.NotAfter, s.LastError) { Leaf = s.Current?.Context.TargetCertificate })];

    public void Dispose()
    {
        if (_disposed.IsCancellationRequested)
        {
            return;
        }

        _disposed.Cancel();
        _node.Dispose();
        _meter.Dispose();
        foreach (Slot slot in _workloads.Values)
        {
            slot.Dispose();
        }
    }

    private ValueTask<SslStreamCertificateContext> GetAsync(Slot slot, CancellationToken cancellationToken)
    {
        Held? held = slot.Current;
        if (held is not null && _time.GetUtcNow() < held.NotAfter)
        {
            // A certificate loaded from the store is served at once; its renewal loop starts with the first use.
            EnsureRunning(slot);
            return ValueTask.FromResult(held.Context);
        }

        return WaitAsync(slot, cancellationToken);
    }

    private void EnsureRunning(Slot slot)
    {
        if (Volatile.Read(ref slot.Started) == 0 && Interlocked.CompareExchange(ref slot.Started, 1, 0) == 0)
        {
            _ = Task.Run(() => RunAsync(slot), CancellationToken.None);
        }
    }

    private async ValueTask<SslStreamCertificateContext> WaitAsync(Slot slot, CancellationToken cancellationToken)
    {
        EnsureRunning(slot);

        while (true)
        {
            // Read the signal before the state: the loop publishes the state, then completes this signal.
            Task attempt = Volatile.Read(ref slot.NextAttempt).Task;
            Held? held = slot.Current;
            if (held is not null && _time.GetUtcNow() < held.NotAfter)
            {
                return held.Context;
            }

            if (slot.LastError is string error)
            {
                throw new CertificateUnavailableException($"no certificate for {slot.Identity}: {error}");
            }

            await attempt.WaitAsync(cancellationToken);
        }
    }

    /// <summary>The renewal loop of one identity: issue, wait until the renewal time (or a backoff), repeat until stopped.</summary>
    private async Task RunAsync(Slot slot)
    {
        CancellationToken stop = slot.StopToken;
        int failures = 0;
        while (!stop.IsCancellationRequested)
        {
            TimeSpan wait;
            IssuedCertificate? issued = null;
            DateTimeOffset requestedAt = _time.GetUtcNow();
            try
            {
                issued = ReferenceEquals(slot, _node)
                    ? await IssueNodeCertificateAsync(stop)
                    : await _client.RequestCertificateAsync(slot.Identity, await GetAsync(_node, stop), stop);
                var held = new Held(issued.CreateContext(), issued.Certificate.NotAfter.ToUniversalTime());
                if (ReferenceEquals(slot, _node))
                {
                    // Written down before it is served: whoever sees the new certificate finds it stored too.
                    Store(issued);
                }

                slot.Current = held;
                slot.LastError = null;
                failures = 0;
                wait = _schedule.RenewAfter(requestedAt, held.NotAfter, _time.GetUtcNow(), NextRandom());
                Log.Issued(_logger, slot.Identity.Uri, held.NotAfter, wait);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // Whatever failed (the CA, the network, a bad answer), the loop must go on renewing.
                failures++;
                slot.LastError = ex.Message;
                wait = _schedule.Backoff(failures, NextRandom());
                Held? current = slot.Current;
                if (current is not null && _time.GetUtcNow() < current.NotAfter)
                {
                    Log.RenewalFailed(_logger, slot.Identity.Uri, ex.Message, current.NotAfter, wait);
                }
                else
                {
                    Log.IssueFailed(_logger, slot.Identity.Uri, ex.Message, wait);
                }

                Notify(() => IssuanceFailed?.Invoke(slot.Identity, ex.Message));
            }

            if (issued is not null)
            {
                Notify(() =>
                {
                    if (_bundle.Update(issued.TrustBundle))
                    {
                        Log.TrustBundleUpdated(_logger, issued.TrustBundle.Count);
                    }
                });
                Notify(() => CertificateIssued?.Invoke(slot.Identity, issued.Certificate));
            }

            Interlocked.Exchange(ref slot.NextAttempt, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            try
            {
                await Task.Delay(wait, _time, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        // Stopped (forgotten or disposed): serve nothing more, and wake whoever waits.
        slot.Current = null;
        slot.LastError = $"{slot.Identity} is no longer served by this node";
        Interlocked.Exchange(ref slot.NextAttempt, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <summary>Runs a subscriber's code: its failure is logged, and neither stops nor fails the renewal.</summary>
    private void Notify(Action action)
    {
        try
        {
            action();
        }
        catch (Exception ex)
        {
            Log.SubscriberFailed(_logger, ex);
        }
    }

    /// <summary>The stored node certificate if it is still valid, for this node, and chains to the trust bundle; null otherwise.</summary>
    private Held? LoadStored()
    {
        if (_store is null)
        {
            return null;
        }

        IssuedCertificate? stored;
        try
        {
            stored = _store.Load();
        }
        catch (InvalidDataException ex)
        {
            _storeFailures.Add(1, new System.Diagnostics.TagList { { "operation", "read" } });
            Log.StoredUnusable(_logger, ex.Message);
            return null;
        }

        if (stored is null)
        {
            return null;
        }

        var verifier = new PeerCertificateVerifier(_client.TrustDomain, () => _bundle.Roots);
        DateTimeOffset notAfter = stored.Certificate.NotAfter.ToUniversalTime();
        if (!verifier.TryVerify(stored.Certificate, stored.Chain, out SpiffeId? identity, out string? reason))
        {
            Log.StoredUnusable(_logger, $"{_store.FilePath}: {reason}");
            return null;
        }

        if (identity != NodeIdentity)
        {
            Log.StoredUnusable(_logger, $"{_store.FilePath} is for {identity}, this node is {NodeIdentity}");
            return null;
        }

        Log.StoredLoaded(_logger, NodeIdentity.Uri, notAfter);
        return new Held(stored.CreateContext(), notAfter);
    }

    /// <summary>Keeps the new node certificate for the next start; a failure costs only that (it is logged and counted).</summary>
    private void Store(IssuedCertificate issued)
    {
        if (_store is null)
        {
            return;
        }

        try
        {
            _store.Save(issued);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException or InvalidOperationException)
        {
            _storeFailures.Add(1, new System.Diagnostics.TagList { { "operation", "write" } });
            Log.StoreFailed(_logger, _store.FilePath, ex.Message);
        }
    }

    /// <summary>Renews the node certificate with itself while it is valid; joins with the token otherwise.</summary>
    private async Task<IssuedCertificate> IssueNodeCertificateAsync(CancellationToken cancellationToken)
    {
        Held? held = _node.Current;
        if (held is not null && _time.GetUtcNow() < held.NotAfter)
        {
            return await _client.RequestCertificateAsync(NodeIdentity, held.Context, cancellationToken);
        }

        string? token = _joinToken();
        if (string.IsNullOrEmpty(token))
        {
            throw new CertificateUnavailableException($"node {_nodeName} has no valid node certificate and no join token to join with");
        }

        return await _client.JoinAsync(_nodeName, token, cancellationToken);
    }

    private static double NextRandom() => RandomNumberGenerator.GetInt32(1 << 24) / (double)(1 << 24);

    private sealed record Held(SslStreamCertificateContext Context, DateTimeOffset NotAfter);

    private sealed class Slot : IDisposable
    {
        public readonly SpiffeId Identity;
        /// <summary>Cancelled when the identity is forgotten or the provider disposed; the loop only reads its token.</summary>
        public readonly CancellationTokenSource Stop = new();

        /// <summary>Taken at construction: the token stays readable after <see cref="Stop"/> is disposed.</summary>
        public readonly CancellationToken StopToken;

        /// <summary>Completed (and replaced) after each attempt of the loop, and when it stops.</summary>
        public TaskCompletionSource NextAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Started;
        private int _stopped;
        private volatile Held? _current;
        private volatile string? _lastError;

        public Slot(SpiffeId identity)
        {
            Identity = identity;
            StopToken = Stop.Token;
        }

        /// <summary>Stops the loop (which may still be finishing; it only reads the cancelled token).</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _stopped, 1) == 0)
            {
                Stop.Cancel();
                Stop.Dispose();
            }
        }

        public Held? Current
        {
            get => _current;
            set => _current = value;
        }

        /// <summary>Why the last attempt failed; null after a success (and before the first attempt).</summary>
        public string? LastError
        {
            get => _lastError;
            set => _lastError = value;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 720, Level = LogLevel.Information, Message = "certificate for {Identity} issued by the CA, valid until {NotAfter:u}; renewal in {RenewIn}")]
        public static partial void Issued(ILogger logger, string identity, DateTimeOffset notAfter, TimeSpan renewIn);

        [LoggerMessage(EventId = 721, Level = LogLevel.Warning, Message = "renewing the certificate for {Identity} failed: {Error}; the current one is valid until {NotAfter:u}; retry in {RetryIn}")]
        public static partial void RenewalFailed(ILogger logger, string identity, string error, DateTimeOffset notAfter, TimeSpan retryIn);

        [LoggerMessage(EventId = 722, Level = LogLevel.Error, Message = "no certificate for {Identity}: {Error}; its flows are refused; retry in {RetryIn}")]
        public static partial void IssueFailed(ILogger logger, string identity, string error, TimeSpan retryIn);

        [LoggerMessage(EventId = 724, Level = LogLevel.Error, Message = "a certificate or trust bundle subscriber failed")]
        public static partial void SubscriberFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = 723, Level = LogLevel.Information, Message = "trust bundle updated from the CA: {Count} roots")]
        public static partial void TrustBundleUpdated(ILogger logger, int count);

        [LoggerMessage(EventId = 725, Level = LogLevel.Information, Message = "stored node certificate for {Identity} loaded, valid until {NotAfter:u}; renewing it with the CA (no join token needed)")]
        public static partial void StoredLoaded(ILogger logger, string identity, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 726, Level = LogLevel.Warning, Message = "stored node certificate not used: {Reason}; the node joins with its join token")]
        public static partial void StoredUnusable(ILogger logger, string reason);

        [LoggerMessage(EventId = 727, Level = LogLevel.Warning, Message = "cannot store the node certificate in {Path}: {Error}; the next start needs a new join token")]
        public static partial void StoreFailed(ILogger logger, string path, string error);
    }
}
