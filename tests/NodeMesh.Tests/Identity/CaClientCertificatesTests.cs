using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>
/// The CA-backed certificate provider against a real CA service on loopback, with lifetimes of a few seconds:
/// joining, renewal before expiry, the switch of new connections to the new certificate, backoff while the CA
/// is down, and recovery.
/// </summary>
public sealed class CaClientCertificatesTests
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly SpiffeId Db = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db");

    private static readonly RenewalSchedule FastRetries = new()
    {
        InitialBackoff = TimeSpan.FromMilliseconds(200),
        MaxBackoff = TimeSpan.FromMilliseconds(800),
    };

    private static CaClientCertificates Provider(CaHarness ca, string node = "node-a")
    {
        string token = ca.Tokens.Create(node, TimeSpan.FromMinutes(10));
        var bundle = new TrustBundle(ca.Ca.TrustBundle.Roots);
        var client = new CaClient(ca.EndPoint, CaHarness.TrustDomain, () => bundle.Roots, TimeSpan.FromSeconds(3));
        return new CaClientCertificates(client, node, () => token, bundle, FastRetries, NullLogger<CaClientCertificates>.Instance);
    }

    private static async Task<SslStreamCertificateContext> WaitForNewAsync(Func<Task<SslStreamCertificateContext>> get, SslStreamCertificateContext old, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < within)
        {
            SslStreamCertificateContext current = await get();
            if (!ReferenceEquals(current, old))
            {
                return current;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"no new certificate within {within}");
    }

    [Fact]
    public async Task Renewal_WithAFewSecondTtl_ReplacesTheCertificateBeforeExpiry_ForNewConnectionsOnly()
    {
        await using var ca = new CaHarness(intermediate: true, leafLifetime: TimeSpan.FromSeconds(4));
        ca.Start();
        ca.Place("node-a", Web);
        using CaClientCertificates provider = Provider(ca);
        var issued = new ConcurrentQueue<SpiffeId>();
        provider.CertificateIssued += (id, _) => issued.Enqueue(id);

        SslStreamCertificateContext first = await provider.GetWorkloadCertificateAsync(Web, default);
        DateTime firstNotAfter = first.TargetCertificate.NotAfter.ToUniversalTime();
        Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(first.TargetCertificate));
        Assert.Same(first, await provider.GetWorkloadCertificateAsync(Web, default));

        // A peer that trusts the mesh; connection A is made with the first certificate.
        var verifier = new PeerCertificateVerifier(CaHarness.TrustDomain, () => provider.TrustBundle);
        using X509Certificate2 serverCert = ca.Ca.Issue(MeshIdentities.Node(CaHarness.TrustDomain, "node1"), TimeSpan.FromHours(1));
        await using var peer = new EchoTlsServer(SslStreamCertificateContext.Create(serverCert, ca.Ca.Chain, offline: true), verifier);
        await using SslStream connectionA = await peer.ConnectAsync(first, verifier);
        await EchoTlsServer.EchoAsync(connectionA, "before rotation");

        SslStreamCertificateContext second = await WaitForNewAsync(() => provider.GetWorkloadCertificateAsync(Web, default).AsTask(), first, TimeSpan.FromSeconds(6));
        Assert.True(DateTime.UtcNow < firstNotAfter, "renewed only after the old certificate expired");
        Assert.NotEqual(first.TargetCertificate.SerialNumber, second.TargetCertificate.SerialNumber);
        Assert.True(second.TargetCertificate.NotAfter > first.TargetCertificate.NotAfter);
        Assert.NotEqual(first.TargetCertificate.GetPublicKeyString(), second.TargetCertificate.GetPublicKeyString());

        // Connection B uses the new certificate; connection A carries on with the one it was made with.
        await using SslStream connectionB = await peer.ConnectAsync(second, verifier);
        await EchoTlsServer.EchoAsync(connectionB, "after rotation");
        await EchoTlsServer.EchoAsync(connectionA, "still flowing");
        Assert.Equal([first.TargetCertificate.SerialNumber, second.TargetCertificate.SerialNumber], peer.Seen.ToArray());
        Assert.Contains(issued, id => id == provider.NodeIdentity);
        Assert.True(issued.Count(id => id == Web) >= 2);
    }

    [Fact]
    public async Task CaDown_FailsClosedAtOnce_RetriesWithGrowingBackoff_ThenRecovers()
    {
        await using var ca = new CaHarness();
        ca.ReservePort();
        ca.Place("node-a", Web);
        using CaClientCertificates provider = Provider(ca);
        var failures = new ConcurrentQueue<TimeSpan>();
        var clock = Stopwatch.StartNew();
        provider.IssuanceFailed += (id, _) =>
        {
            if (id == provider.NodeIdentity)
            {
                failures.Enqueue(clock.Elapsed);
            }
        };

        var ex = await Assert.ThrowsAsync<CertificateUnavailableException>(() => provider.GetNodeCertificateAsync(default).AsTask());
        Assert.Contains("unreachable", ex.Message, StringComparison.Ordinal);

        // While backing off, callers are refused at once rather than queued on a CA that is down.
        var quick = Stopwatch.StartNew();
        await Assert.ThrowsAsync<CertificateUnavailableException>(() => provider.GetWorkloadCertificateAsync(Web, default).AsTask());
        Assert.True(quick.Elapsed < TimeSpan.FromMilliseconds(500), $"took {quick.Elapsed}");

        while (failures.Count < 4 && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(50);
        }

        TimeSpan[] at = [.. failures];
        Assert.True(at.Length >= 4, $"{at.Length} attempts");
        TimeSpan firstGap = at[1] - at[0];
        TimeSpan thirdGap = at[3] - at[2];
        Assert.True(thirdGap > firstGap, $"backoff did not grow: {firstGap} then {thirdGap}");
        Assert.True(firstGap >= TimeSpan.FromMilliseconds(90), $"first retry after {firstGap}");

        ca.Start();
        SslStreamCertificateContext node = await WaitForAsync(() => provider.GetNodeCertificateAsync(default).AsTask(), TimeSpan.FromSeconds(5));
        Assert.Equal([provider.NodeIdentity.Uri], PeerCertificateVerifier.ReadUriSans(node.TargetCertificate));
        SslStreamCertificateContext web = await WaitForAsync(() => provider.GetWorkloadCertificateAsync(Web, default).AsTask(), TimeSpan.FromSeconds(5));
        Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(web.TargetCertificate));
    }

    [Fact]
    public async Task CaDownDuringRenewal_KeepsServingTheCurrentCertificate_ThenRenewsWhenItIsBack()
    {
        await using var ca = new CaHarness(leafLifetime: TimeSpan.FromSeconds(5));
        ca.Start();
        ca.Place("node-a", Web);
        using CaClientCertificates provider = Provider(ca);
        SslStreamCertificateContext first = await provider.GetWorkloadCertificateAsync(Web, default);
        var failed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        provider.IssuanceFailed += (id, _) =>
        {
            if (id == Web)
            {
                failed.TrySetResult();
            }
        };

        await ca.StopAsync();
        await failed.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Same(first, await provider.GetWorkloadCertificateAsync(Web, default));
        Assert.Contains(provider.Status(), s => s.Identity == Web && s.LastError is not null && s.NotAfter is not null);

        ca.Start();
        SslStreamCertificateContext second = await WaitForNewAsync(() => provider.GetWorkloadCertificateAsync(Web, default).AsTask(), first, TimeSpan.FromSeconds(4));
        Assert.True(DateTime.UtcNow < first.TargetCertificate.NotAfter.ToUniversalTime(), "the outage outlived the certificate");
        Assert.NotEqual(first.TargetCertificate.SerialNumber, second.TargetCertificate.SerialNumber);
        Assert.Contains(provider.Status(), s => s.Identity == Web && s.LastError is null);
    }

    [Fact]
    public async Task IdentityPlacedOnAnotherNode_IsUnavailable_WithTheCasReason()
    {
        await using var ca = new CaHarness();
        ca.Start();
        ca.Place("node-b", Db);
        using CaClientCertificates provider = Provider(ca);
        var ex = await Assert.ThrowsAsync<CertificateUnavailableException>(() => provider.GetWorkloadCertificateAsync(Db, default).AsTask());
        Assert.Contains("is not registered on node node-a", ex.Message, StringComparison.Ordinal);

        provider.Forget(Db);
        provider.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => provider.GetWorkloadCertificateAsync(Db, default).AsTask());
    }

    [Fact]
    public async Task TrustBundle_FollowsTheCa_WhenItAddsARoot()
    {
        await using var ca = new CaHarness(leafLifetime: TimeSpan.FromSeconds(2));
        ca.Start();
        using CaClientCertificates provider = Provider(ca);
        await provider.StartAsync(default);
        Assert.Single(provider.TrustBundle);
        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        provider.Bundle.Changed += _ => changed.TrySetResult();

        string nextDir = TempDir.Create("nm-ca-next");
        try
        {
            using var next = CertificateAuthority.Create(nextDir, CaHarness.TrustDomain, TimeSpan.FromDays(1));
            CertificateAuthority.WriteAdditionalRoots(ca.Dir, [next.Root]);
            Assert.True(ca.Ca.ReloadTrustBundle());

            // The node's next renewal brings the new root along.
            await changed.Task.WaitAsync(TimeSpan.FromSeconds(4));
            Assert.Equal(2, provider.TrustBundle.Count);
            Assert.Contains(provider.TrustBundle.Cast<X509Certificate2>(), c => c.Thumbprint == next.Root.Thumbprint);
        }
        finally
        {
            TempDir.Delete(nextDir);
        }
    }

    [Fact]
    public async Task RestartedNode_RenewsWithItsStoredNodeCertificate_WithoutAJoinToken()
    {
        await using var ca = new CaHarness(intermediate: true);
        ca.Start();
        ca.Place("node-a", Web);
        string stateDir = TempDir.Create("nm-state");
        try
        {
            var store = new NodeIdentityStore(stateDir);
            string token = ca.Tokens.Create("node-a", TimeSpan.FromMinutes(10));
            SslStreamCertificateContext joined;
            using (CaClientCertificates first = StoredProvider(ca, store, () => token))
            {
                joined = await first.GetNodeCertificateAsync(default);
            }

            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(store.FilePath));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(store.Directory));
            Assert.False(File.Exists(store.FilePath + ".tmp"));

            // The restarted node has no token at all: it serves the stored certificate and renews it with itself.
            var issued = new ConcurrentQueue<X509Certificate2>();
            using CaClientCertificates restarted = StoredProvider(ca, store, () => null);
            restarted.CertificateIssued += (id, certificate) =>
            {
                if (id == restarted.NodeIdentity)
                {
                    issued.Enqueue(certificate);
                }
            };

            SslStreamCertificateContext atStart = await restarted.GetNodeCertificateAsync(default);
            Assert.Equal(joined.TargetCertificate.SerialNumber, atStart.TargetCertificate.SerialNumber);
            SslStreamCertificateContext renewed = await WaitForNewAsync(() => restarted.GetNodeCertificateAsync(default).AsTask(), atStart, TimeSpan.FromSeconds(5));
            Assert.NotEqual(joined.TargetCertificate.SerialNumber, renewed.TargetCertificate.SerialNumber);
            CaDecision renewal = await ca.DecisionAsync(d => d is { Kind: "certificate", Issued: true } && d.Identity == restarted.NodeIdentity.Uri);
            Assert.Equal("node-a", renewal.Node);
            Assert.Single(ca.Decisions, d => d.Kind == "join");

            // The renewed certificate replaced the stored one, and workloads get theirs with it.
            Assert.Equal(renewed.TargetCertificate.SerialNumber, store.Load()!.Certificate.SerialNumber);
            SslStreamCertificateContext web = await restarted.GetWorkloadCertificateAsync(Web, default);
            Assert.Equal([Web.Uri], PeerCertificateVerifier.ReadUriSans(web.TargetCertificate));
        }
        finally
        {
            TempDir.Delete(stateDir);
        }
    }

    [Fact]
    public async Task StoredNodeCertificate_ThatIsCorruptOrFromAnotherCa_IsIgnored_AndTheNodeJoins()
    {
        await using var ca = new CaHarness();
        ca.Start();
        string stateDir = TempDir.Create("nm-state");
        try
        {
            var store = new NodeIdentityStore(stateDir);
            Directory.CreateDirectory(store.Directory);
            File.WriteAllText(store.FilePath, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
            string token = ca.Tokens.Create("node-a", TimeSpan.FromMinutes(10));
            using (CaClientCertificates provider = StoredProvider(ca, store, () => token))
            {
                await provider.GetNodeCertificateAsync(default);
            }

            // A certificate of another CA, stored for this node: not trusted, so not used.
            await using var other = new CaHarness();
            other.Start();
            string otherToken = other.Tokens.Create("node-a", TimeSpan.FromMinutes(10));
            using (CaClientCertificates foreign = StoredProvider(other, store, () => otherToken))
            {
                await foreign.GetNodeCertificateAsync(default);
            }

            Assert.Single(ca.Decisions, d => d is { Kind: "join", Issued: true });
            Assert.Single(other.Decisions, d => d is { Kind: "join", Issued: true });
        }
        finally
        {
            TempDir.Delete(stateDir);
        }
    }

    private static CaClientCertificates StoredProvider(CaHarness ca, NodeIdentityStore store, Func<string?> token)
    {
        var bundle = new TrustBundle(ca.Ca.TrustBundle.Roots);
        var client = new CaClient(ca.EndPoint, CaHarness.TrustDomain, () => bundle.Roots, TimeSpan.FromSeconds(3));
        return new CaClientCertificates(client, "node-a", token, bundle, FastRetries, NullLogger<CaClientCertificates>.Instance, store: store);
    }

    [Fact]
    public void RenewalSchedule_RenewsBeforeHalfLife_AndBacksOffExponentially()
    {
        var schedule = new RenewalSchedule();
        DateTimeOffset requested = DateTimeOffset.UnixEpoch;
        DateTimeOffset notAfter = requested.AddHours(24);
        Assert.Equal(TimeSpan.FromHours(12), schedule.RenewAfter(requested, notAfter, requested, random: 0));
        Assert.Equal(TimeSpan.FromHours(12) - TimeSpan.FromHours(2.4), schedule.RenewAfter(requested, notAfter, requested, random: 1));
        Assert.Equal(TimeSpan.Zero, schedule.RenewAfter(requested, notAfter, notAfter, random: 0));

        Assert.Equal(TimeSpan.FromSeconds(0.5), schedule.Backoff(1, random: 0));
        Assert.Equal(TimeSpan.FromSeconds(1), schedule.Backoff(1, random: 1));
        Assert.Equal(TimeSpan.FromSeconds(4), schedule.Backoff(3, random: 1));
        Assert.Equal(TimeSpan.FromMinutes(1), schedule.Backoff(50, random: 1));
    }

    private static async Task<T> WaitForAsync<T>(Func<Task<T>> attempt, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await attempt();
            }
            catch (CertificateUnavailableException) when (clock.Elapsed < within)
            {
                await Task.Delay(50);
            }
        }
    }
}
