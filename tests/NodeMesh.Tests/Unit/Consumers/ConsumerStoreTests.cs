using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Consumers;
using NodeMesh.Contracts;

namespace NodeMesh.Tests.Unit.Consumers;

/// <summary>The state directory's store, the usage counts and the certificate lookups, on files the test makes.</summary>
public sealed class ConsumerStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nodemesh-consumers-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task TheFileStore_KeepsConsumersAcrossARestart_WithKeysOnlyAsHashes_InAFileOnlyRootReads()
    {
        string key;
        await using (var store = new ConsumerFileStore(_dir))
        {
            await store.StartAsync(CancellationToken.None);
            Assert.True(store.Current.Loaded);
            var service = new ConsumerService(store, new ConsumerUsage(null), plan => plan == "gold" ? 100 : null);
            Assert.True((await service.HandleAsync("consumer-create", new ConsumerChange { Name = "shop-app", Plan = "gold" }, default)).Ok);
            ApiResponse issued = await service.HandleAsync("consumer-issue-key", new ConsumerChange { Name = "shop-app" }, default);
            key = issued.IssuedKey!;
            Assert.Equal(ConsumerMatchKind.Found, store.Current.ByApiKey(key, DateTimeOffset.UtcNow).Kind);

            (ApiResponse unknownPlan, int status) = await service.ExecuteAsync("consumer-update", new ConsumerChange { Name = "shop-app", Plan = "platinum" }, default);
            Assert.Equal((false, 400), (unknownPlan.Ok, status));
            Assert.Contains("no plan named platinum", unknownPlan.Error, StringComparison.Ordinal);
            Assert.Equal(404, (await service.ExecuteAsync("consumer-disable", new ConsumerChange { Name = "ghost" }, default)).Status);
            Assert.Equal(409, (await service.ExecuteAsync("consumer-create", new ConsumerChange { Name = "shop-app" }, default)).Status);
        }

        string file = Path.Combine(_dir, ConsumerFileStore.FileName);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.DoesNotContain(key, await File.ReadAllTextAsync(file), StringComparison.Ordinal);

        await using var again = new ConsumerFileStore(_dir);
        await again.StartAsync(CancellationToken.None);
        Assert.Equal(ConsumerMatch(again, key), (ConsumerMatchKind.Found, "gold"));
    }

    private static (ConsumerMatchKind, string?) ConsumerMatch(IConsumerStore store, string key)
    {
        ConsumerMatch match = store.Current.ByApiKey(key, DateTimeOffset.UtcNow);
        return (match.Kind, match.Consumer?.Plan);
    }

    [Fact]
    public async Task ACorruptFile_StopsTheStart_NamingTheFileAndTheEntry()
    {
        await File.WriteAllTextAsync(Path.Combine(_dir, ConsumerFileStore.FileName), """{ "consumers": [ { "name": "ok" }, { "name": "Bad Name" } ] }""");
        await using var store = new ConsumerFileStore(_dir);
        var refused = await Assert.ThrowsAsync<ConsumerStoreException>(() => store.StartAsync(CancellationToken.None));
        Assert.Contains(ConsumerFileStore.FileName, refused.Message, StringComparison.Ordinal);
        Assert.Contains("consumers[1]", refused.Message, StringComparison.Ordinal);

        await File.WriteAllTextAsync(Path.Combine(_dir, ConsumerFileStore.FileName), "{ not json");
        Assert.Contains("cannot read", (await Assert.ThrowsAsync<ConsumerStoreException>(() => store.StartAsync(CancellationToken.None))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheQuota_HoldsPerUtcDay_AndSurvivesARestart()
    {
        var clock = new ManualClock(new DateTimeOffset(2026, 12, 3, 23, 59, 0, TimeSpan.Zero));
        await using (var usage = new ConsumerUsage(_dir, clock))
        {
            Assert.Equal([true, true, false], Enumerable.Range(0, 3).Select(_ => usage.TryCount("app", 2)));
            Assert.Equal(TimeSpan.FromMinutes(1), usage.UntilTomorrow());
            ConsumerUsageInfo info = usage.Of("app", 2);
            Assert.Equal(("2026-12-03", 2L, 2L, 1L), (info.Day, info.RequestsToday, info.Requests, info.Refused));
        }

        await using (var restarted = new ConsumerUsage(_dir, clock))
        {
            Assert.False(restarted.TryCount("app", 2));
            clock.Advance(TimeSpan.FromMinutes(1));
            Assert.True(restarted.TryCount("app", 2));
            Assert.Equal(("2026-12-04", 1L, 3L), (restarted.Of("app", 2).Day, restarted.Of("app", 2).RequestsToday, restarted.Of("app", 2).Requests));
            Assert.True(Enumerable.Range(0, 1000).All(_ => restarted.TryCount("unlimited", 0)));
        }
    }

    [Fact]
    public async Task UnreadableCounts_StartFromZero_AndSaySo()
    {
        await File.WriteAllTextAsync(Path.Combine(_dir, ConsumerUsage.FileName), "{ broken");
        var logger = new Microsoft.Extensions.Logging.Testing.FakeLogger();
        await using var usage = new ConsumerUsage(_dir, logger: logger);
        Assert.Equal(0, usage.Of("app", 0).Requests);
        Assert.Contains("cannot read the usage counts", logger.LatestRecord.Message, StringComparison.Ordinal);
        Assert.True(usage.TryCount("app", 1));
    }

    [Fact]
    public void AClientCertificate_NamesItsConsumer_ByFingerprintUriDnsOrSubject()
    {
        using X509Certificate2 certificate = Certificate("CN=partner-app, O=Partner", "spiffe://partner.example/app", "app.partner.example");
        string fingerprint = certificate.GetCertHashString(HashAlgorithmName.SHA256);
        ConsumerRecord Of(string name, string entry) => new() { Name = name, Certificates = [entry] };

        Assert.Equal("by-uri", new ConsumerDirectory([Of("by-uri", "uri:spiffe://partner.example/app")]).ByCertificate(certificate).Consumer?.Name);
        Assert.Equal("by-dns", new ConsumerDirectory([Of("by-dns", "dns:APP.partner.example")]).ByCertificate(certificate).Consumer?.Name);
        Assert.Equal("by-subject", new ConsumerDirectory([Of("by-subject", "subject:CN=partner-app, O=Partner")]).ByCertificate(certificate).Consumer?.Name);
        string colons = string.Join(':', Enumerable.Range(0, 32).Select(i => fingerprint.Substring(i * 2, 2)));
        Assert.Equal("by-hash", new ConsumerDirectory([Of("by-hash", "sha256:" + colons)]).ByCertificate(certificate).Consumer?.Name);
        // The fingerprint is the most specific: it wins over a name another consumer claims.
        Assert.Equal("by-hash", new ConsumerDirectory([Of("by-uri", "uri:spiffe://partner.example/app"), Of("by-hash", "sha256:" + fingerprint)]).ByCertificate(certificate).Consumer?.Name);
        Assert.Equal(ConsumerMatchKind.Unknown, new ConsumerDirectory([Of("other", "uri:spiffe://partner.example/other")]).ByCertificate(certificate).Kind);
    }

    internal static X509Certificate2 Certificate(string subject, string uri, string dns)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(uri));
        san.AddDnsName(dns);
        request.CertificateExtensions.Add(san.Build());
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1));
    }
}
