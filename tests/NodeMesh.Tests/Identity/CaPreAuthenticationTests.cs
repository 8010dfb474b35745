using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

/// <summary>
/// What an unauthenticated caller can make the CA service do: nothing fetched for a certificate it presents,
/// and no way to take every connection slot with idle sockets.
/// </summary>
public sealed class CaPreAuthenticationTests : IAsyncLifetime
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private readonly CaHarness _ca = new();

    public Task InitializeAsync()
    {
        _ca.Start();
        _ca.Place("node-a", Web);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task UntrustedClientCertificateWithFetchUrls_IsRefused_NothingIsFetched_AndJoinsAreNotDelayed()
    {
        await using var trap = new FetchTrap();
        using X509Certificate2 untrusted = UntrustedCertificates.WithFetchUrls("spiffe://cluster.local/ns/nodemesh-system/sa/node.node-a", trap.Url);

        // The attacker is 127.0.0.2; the joining node 127.0.0.1.
        Task<string>[] attacks = Enumerable.Range(0, 16).Select(async _ =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
            await socket.ConnectAsync(_ca.EndPoint);
            return await UntrustedCertificates.PresentAsync(socket, untrusted, TimeSpan.FromSeconds(20));
        }).ToArray();

        // An unrelated join while the sixteen handshakes run.
        await Task.Delay(100);
        var watch = Stopwatch.StartNew();
        await _ca.Client().JoinAsync("node-a", _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5)), default);
        watch.Stop();

        string[] outcomes = await Task.WhenAll(attacks);
        Assert.All(outcomes, o => Assert.True(o is "refused" or "closed", $"an untrusted client certificate got: {o}"));
        CaDecision refusal = await _ca.DecisionAsync(d => d.Kind == "handshake");
        Assert.False(refusal.Issued);
        Assert.Equal(0, trap.Connections);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"a join took {watch.Elapsed.TotalMilliseconds:0} ms while untrusted certificates were presented");
    }

    [Fact]
    public async Task AThousandIdleConnectionsFromOneAddress_AreShed_WhileJoinAndRenewalKeepWorking()
    {
        // The idle ones come from 127.0.0.2, the real clients from 127.0.0.1.
        var idle = new List<Socket>();
        try
        {
            int resetAtConnect = 0;
            for (int i = 0; i < 1000; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
                try
                {
                    await socket.ConnectAsync(_ca.EndPoint);
                    idle.Add(socket);
                }
                catch (SocketException)
                {
                    // Shed so fast that the reset beat the connect's completion.
                    socket.Dispose();
                    resetAtConnect++;
                }
            }

            var watch = Stopwatch.StartNew();
            IssuedCertificate node = await _ca.Client().JoinAsync("node-a", _ca.Tokens.Create("node-a", TimeSpan.FromMinutes(5)), default);
            TimeSpan join = watch.Elapsed;
            System.Net.Security.SslStreamCertificateContext nodeCertificate = node.CreateContext();
            watch.Restart();
            await _ca.Client().RequestCertificateAsync(MeshIdentities.Node(CaHarness.TrustDomain, "node-a"), nodeCertificate, default);
            await _ca.Client().RequestCertificateAsync(Web, nodeCertificate, default);
            TimeSpan renewal = watch.Elapsed;

            Assert.True(join < TimeSpan.FromSeconds(2), $"a join took {join.TotalMilliseconds:0} ms behind 1,000 idle connections");
            Assert.True(renewal < TimeSpan.FromSeconds(2), $"a renewal took {renewal.TotalMilliseconds:0} ms behind 1,000 idle connections");

            // All but the per-address share were closed at once.
            int closed = resetAtConnect + await CountClosedAsync(idle, TimeSpan.FromSeconds(1));
            Assert.True(closed >= 1000 - _ca.Options.MaxConcurrentRequestsPerAddress,
                $"only {closed} of 1,000 idle connections were closed (per-address limit {_ca.Options.MaxConcurrentRequestsPerAddress})");
        }
        finally
        {
            idle.ForEach(s => s.Dispose());
        }
    }

    /// <summary>How many of <paramref name="sockets"/> the server has closed (a read ends or fails) within <paramref name="wait"/>.</summary>
    internal static async Task<int> CountClosedAsync(IEnumerable<Socket> sockets, TimeSpan wait)
    {
        bool[] closed = await Task.WhenAll(sockets.Select(async socket =>
        {
            using var deadline = new CancellationTokenSource(wait);
            try
            {
                return await socket.ReceiveAsync(new byte[1], SocketFlags.None, deadline.Token) == 0;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
            catch (SocketException)
            {
                return true;
            }
        }));
        return closed.Count(c => c);
    }

    public async Task DisposeAsync() => await _ca.DisposeAsync();
}
