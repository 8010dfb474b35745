using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Api;
using NodeMesh.Contracts;
using NodeMesh.Tests.Identity;

namespace NodeMesh.Tests.Unit;

/// <summary>The local API always replies: a failing handler becomes an error reply, and a silent server a clear client error.</summary>
public sealed class LocalApiTests : IDisposable
{
    private readonly string _dir = TempDir.Create("nm-api");

    private string SocketPath => Path.Combine(_dir, "agent.sock");

    [Fact]
    public async Task HandlerThatThrows_IsAnsweredWithTheError_AndTheServerKeepsServing()
    {
        int calls = 0;
        using var metrics = new NodeMesh.Telemetry.MeshMetrics();
        await using var server = new LocalApiServer(SocketPath, ApiAccess.RootOnly, (request, _) => Interlocked.Increment(ref calls) == 1
            ? throw new System.Net.Sockets.SocketException((int)SocketError.AddressAlreadyInUse)
            : Task.FromResult(new ApiResponse { Ok = true }), metrics, NullLogger<LocalApiServer>.Instance);
        server.Start();

        ApiResponse failed = await LocalApiClient.SendAsync(SocketPath, new ApiRequest { Command = "workload-add" }, CancellationToken.None);
        Assert.False(failed.Ok);
        Assert.Contains("workload-add failed", failed.Error, StringComparison.Ordinal);

        ApiResponse next = await LocalApiClient.SendAsync(SocketPath, new ApiRequest { Command = "status" }, CancellationToken.None);
        Assert.True(next.Ok);
    }

    [Fact]
    public async Task ServerThatClosesWithoutAnswering_IsAClearIOException_NotAParserError()
    {
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        listener.Listen();
        Task silent = Task.Run(async () =>
        {
            // Reads the whole request, then hangs up without a word (what a crashed handler used to do).
            using Socket client = await listener.AcceptAsync();
            byte[] buffer = new byte[4096];
            while (await client.ReceiveAsync(buffer, SocketFlags.None) > 0)
            {
            }
        });

        var ex = await Assert.ThrowsAsync<IOException>(() => LocalApiClient.SendAsync(SocketPath, new ApiRequest { Command = "status" }, CancellationToken.None));
        Assert.Contains("closed the connection without answering", ex.Message, StringComparison.Ordinal);
        await silent;

        var missing = await Assert.ThrowsAsync<IOException>(() => LocalApiClient.SendAsync(Path.Combine(_dir, "none.sock"), new ApiRequest { Command = "status" }, CancellationToken.None));
        Assert.Contains("no such socket", missing.Message, StringComparison.Ordinal);
    }

    public void Dispose() => TempDir.Delete(_dir);
}
