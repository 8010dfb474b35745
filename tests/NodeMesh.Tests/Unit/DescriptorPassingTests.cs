using System.Net.Sockets;
using NodeMesh.Interop;

namespace NodeMesh.Tests.Unit;

/// <summary>SCM_RIGHTS over a real Unix socket: the namespace the receiver gets is the one the sender held.</summary>
public sealed class DescriptorPassingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nm-fdpass").FullName;

    [Fact]
    public async Task ADescriptorSentWithTheFirstBytes_ArrivesOnce_AndNamesTheSameNamespace()
    {
        (Socket client, Socket server) = await ConnectedPairAsync();
        using (client)
        using (server)
        using (SafeFileDescriptor netns = NetworkNamespace.Open("/proc/self/ns/net"))
        {
            byte[] payload = "hello with a namespace"u8.ToArray();
            Assert.Equal(payload.Length, DescriptorPassing.Send(client, payload, netns));
            client.Send("and more"u8);
            client.Shutdown(SocketShutdown.Send);

            var received = new List<SafeFileDescriptor>();
            byte[] buffer = new byte[payload.Length];
            int read = await DescriptorPassing.ReceiveAsync(server, buffer, received, CancellationToken.None);
            try
            {
                Assert.Equal(payload.Length, read);
                SafeFileDescriptor passed = Assert.Single(received);
                Assert.NotEqual(netns.Fd, passed.Fd);
                Assert.Null(NetworkNamespace.NotANetworkNamespace(passed));
                Assert.Equal(NetworkNamespace.Identify(netns, "sent"), NetworkNamespace.Identify(passed, "received"));

                // The rest comes without descriptors.
                var none = new List<SafeFileDescriptor>();
                byte[] rest = new byte[64];
                int more = await DescriptorPassing.ReceiveAsync(server, rest, none, CancellationToken.None);
                Assert.Equal("and more", System.Text.Encoding.ASCII.GetString(rest, 0, more));
                Assert.Empty(none);
            }
            finally
            {
                received.ForEach(d => d.Dispose());
            }
        }
    }

    [Fact]
    public void AFileThatIsNotANamespace_IsToldApart()
    {
        string file = Path.Combine(_dir, "plain");
        File.WriteAllText(file, "x");
        using SafeFileDescriptor plain = NetworkNamespace.Open(file);
        Assert.Equal("not a namespace", NetworkNamespace.NotANetworkNamespace(plain));
        using SafeFileDescriptor uts = NetworkNamespace.Open("/proc/self/ns/uts");
        Assert.Contains("not a network namespace", NetworkNamespace.NotANetworkNamespace(uts), StringComparison.Ordinal);
    }

    private async Task<(Socket Client, Socket Server)> ConnectedPairAsync()
    {
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(Path.Combine(_dir, "s.sock")));
        listener.Listen(1);
        var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(Path.Combine(_dir, "s.sock")));
        Socket server = await listener.AcceptAsync();
        return (client, server);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
