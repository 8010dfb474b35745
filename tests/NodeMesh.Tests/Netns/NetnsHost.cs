using System.Net;
using System.Net.Sockets;
using NodeMesh.Capture;

namespace NodeMesh.Tests.Netns;

/// <summary>How a client's attempt to talk to a destination ended.</summary>
internal enum ProbeOutcome
{
    /// <summary>The destination answered and ended the stream in order.</summary>
    Answered,

    /// <summary>connect() was refused (RST to the SYN).</summary>
    Refused,

    /// <summary>Connected, then reset (or another socket error) before a clean end.</summary>
    Reset,

    /// <summary>Connected, then an orderly close with no answer at all.</summary>
    ClosedWithoutAnswer,

    /// <summary>Neither an answer nor a failure before the deadline: a hang.</summary>
    TimedOut,
}

internal sealed record ProbeResult(ProbeOutcome Outcome, string Answer, string Detail)
{
    public override string ToString() => $"{Outcome} ({Detail})";
}

/// <summary>
/// A network namespace of a topology that runs things: a pod, a node or the external host. Sockets for its
/// servers and clients are created on a thread that entered the namespace (the agent's own
/// <see cref="NamespaceThread"/>), so they are real sockets of that namespace, subject to its rules.
/// </summary>
internal abstract class NetnsHost
{
    private readonly Lazy<Task<NamespaceThread>> _thread;

    protected NetnsHost(Topology topology, string name, string @namespace, IPAddress ip)
    {
        Topology = topology;
        Name = name;
        Namespace = @namespace;
        Ip = ip;
        _thread = new Lazy<Task<NamespaceThread>>(() => NamespaceThread.StartAsync(NetnsPath));
    }

    public Topology Topology { get; }

    /// <summary>Short name: n1p2, node1, ext.</summary>
    public string Name { get; }

    /// <summary>The ip-netns name, e.g. nt1a2b3-n1p2.</summary>
    public string Namespace { get; }

    public string NetnsPath => "/var/run/netns/" + Namespace;

    public IPAddress Ip { get; }

    /// <summary>The host's ULA (fd00::/8), once <see cref="Topology.AddIpv6Async"/> gave it one.</summary>
    public IPAddress? Ipv6 { get; internal set; }

    public IPEndPoint EndPoint(int port) => new(Ip, port);

    /// <summary>The ULA and port; throws if the topology has no IPv6 addresses.</summary>
    public IPEndPoint Ipv6EndPoint(int port) =>
        new(Ipv6 ?? throw new InvalidOperationException($"{Name} has no IPv6 address: call Topology.AddIpv6Async first"), port);

    /// <summary>The kernel-made fe80:: address of <paramref name="device"/> here (no scope: that is the client's interface).</summary>
    public async Task<IPAddress> LinkLocalAsync(string device)
    {
        CommandResult show = await Command.RunAsync(Command.DefaultTimeout, "ip", "-n", Namespace, "-6", "-o", "addr", "show", "dev", device, "scope", "link");
        // "2: eth0    inet6 fe80::1c2d:.../64 scope link ..."
        string[] words = show.Stdout.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int inet6 = Array.IndexOf(words, "inet6");
        if (!show.Succeeded || inet6 < 0 || inet6 + 1 >= words.Length)
        {
            throw new InvalidOperationException($"{Name}: no link-local address on {device}: {show}");
        }

        return IPAddress.Parse(words[inet6 + 1].Split('/')[0]);
    }

    /// <summary><paramref name="address"/> (a link-local address of a neighbour) scoped to <paramref name="device"/> of this host.</summary>
    public async Task<IPAddress> ScopedAsync(IPAddress address, string device)
    {
        CommandResult link = await Command.RunAsync(Command.DefaultTimeout, "ip", "-n", Namespace, "-o", "link", "show", "dev", device);
        // "2: eth0@if7: <BROADCAST,..."
        if (!link.Succeeded || !long.TryParse(link.Stdout.Split(':')[0], System.Globalization.CultureInfo.InvariantCulture, out long index))
        {
            throw new InvalidOperationException($"{Name}: no interface {device}: {link}");
        }

        return new IPAddress(address.GetAddressBytes(), index);
    }

    public override string ToString() => $"{Name} ({Ip}, {Namespace})";

    /// <summary>Runs <paramref name="create"/> on a thread inside this namespace (for sockets born here).</summary>
    public async Task<T> InNamespaceAsync<T>(Func<T> create) => await (await _thread.Value).InvokeAsync(create);

    /// <summary>
    /// A TCP server on 0.0.0.0:<paramref name="port"/> inside this namespace, or on <paramref name="bind"/>:
    /// <see cref="IPAddress.IPv6Any"/> makes it a dual-stack [::] server, as most applications bind.
    /// </summary>
    public async Task<TcpTestServer> StartTcpServerAsync(int port, ServerMode mode, IPAddress? bind = null)
    {
        IPAddress address = bind ?? IPAddress.Any;
        Socket listener = await InNamespaceAsync(() =>
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (address.Equals(IPAddress.IPv6Any))
                {
                    socket.DualMode = true;
                }

                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, port));
                socket.Listen(1024);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        });
        var server = new TcpTestServer(this, listener, mode);
        Topology.Track(server);
        return server;
    }

    /// <summary>
    /// A client socket connected from inside this namespace, as an application there would make it: not
    /// marked, so the capture rules see it. Throws <see cref="SocketException"/> if the connect fails.
    /// </summary>
    public async Task<Socket> ConnectAsync(IPEndPoint destination, TimeSpan? timeout = null)
    {
        Socket socket = await InNamespaceAsync(() =>
        {
            var created = new Socket(destination.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            if (destination.Address.IsIPv4MappedToIPv6)
            {
                created.DualMode = true; // an IPv6 socket speaking IPv4 (::ffff:a.b.c.d)
            }

            return created;
        });
        Topology.Track(socket);
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            await socket.ConnectAsync(destination, deadline.Token);
            return socket;
        }
        catch (OperationCanceledException)
        {
            socket.Dispose();
            throw new TimeoutException($"{Name}: connect to {destination} did not complete within {(timeout ?? TimeSpan.FromSeconds(10)).TotalSeconds} s");
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Connects, sends <paramref name="message"/>, half-closes and reads the answer; reports how that ended
    /// instead of throwing. Used to show that a connection fails (and fails fast) or works.
    /// </summary>
    public async Task<ProbeResult> ProbeAsync(IPEndPoint destination, string message, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? TimeSpan.FromSeconds(5);
        Socket socket;
        try
        {
            socket = await ConnectAsync(destination, limit);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return new ProbeResult(ProbeOutcome.Refused, "", "connect: " + ex.Message);
        }
        catch (SocketException ex)
        {
            return new ProbeResult(ProbeOutcome.Reset, "", $"connect: {ex.SocketErrorCode}: {ex.Message}");
        }
        catch (TimeoutException ex)
        {
            return new ProbeResult(ProbeOutcome.TimedOut, "", ex.Message);
        }

        using (socket)
        {
            StreamResult answer = await socket.ExchangeAsync(TestData.Ascii(message), limit);
            return answer.End switch
            {
                StreamEnd.CleanEof when answer.Bytes > 0 => new ProbeResult(ProbeOutcome.Answered, answer.HeadText, answer.ToString()),
                StreamEnd.CleanEof => new ProbeResult(ProbeOutcome.ClosedWithoutAnswer, "", answer.ToString()),
                StreamEnd.TimedOut => new ProbeResult(ProbeOutcome.TimedOut, answer.HeadText, answer.ToString()),
                _ => new ProbeResult(ProbeOutcome.Reset, answer.HeadText, answer.ToString()),
            };
        }
    }

    /// <summary>Runs a program inside this namespace (<c>ip netns exec</c>) and waits for it.</summary>
    public Task<CommandResult> RunAsync(string program, params string[] args) => RunAsync(Command.DefaultTimeout, program, args);

    public Task<CommandResult> RunAsync(TimeSpan timeout, string program, params string[] args) =>
        Command.RunAsync(timeout, "ip", ["netns", "exec", Namespace, program, .. args]);

    /// <summary>This namespace's iptables rules (iptables-save), read the way the agent reads them.</summary>
    public async Task<string> IptablesSaveAsync()
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return await RuleInstaller.SaveAsync(NetnsPath, deadline.Token);
    }

    /// <summary>This namespace's ip6tables rules (ip6tables-save), read the way the agent reads them.</summary>
    public async Task<string> Ip6tablesSaveAsync()
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return await RuleInstaller.SaveIpv6Async(NetnsPath, deadline.Token);
    }

    internal async ValueTask StopThreadAsync()
    {
        if (_thread.IsValueCreated)
        {
            try
            {
                (await _thread.Value).Dispose();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The namespace could not be entered in the first place: nothing to stop.
            }
        }
    }
}

/// <summary>A pod: a workload namespace behind a node, with its own address and SPIFFE identity.</summary>
internal sealed class Pod : NetnsHost
{
    public Pod(Topology topology, Node node, int index)
        : base(topology, $"n{node.Index}p{index}", $"{topology.Prefix}-n{node.Index}p{index}", IPAddress.Parse($"10.240.{node.Index}.{index + 1}"))
    {
        Node = node;
        Index = index;
    }

    public Node Node { get; }

    public int Index { get; }

    /// <summary>spiffe://cluster.local/ns/test/sa/&lt;pod name&gt;.</summary>
    public string Identity => $"spiffe://{Topology.TrustDomain}/ns/test/sa/{Name}";
}

/// <summary>A node: link0 on the lan (10.231.0.i) and a bridge for its pods; its agent runs here.</summary>
internal sealed class Node : NetnsHost
{
    private readonly List<Pod> _pods = [];

    public Node(Topology topology, int index)
        : base(topology, $"node{index}", $"{topology.Prefix}-n{index}", IPAddress.Parse($"10.231.0.{index}"))
    {
        Index = index;
    }

    public int Index { get; }

    public IReadOnlyList<Pod> Pods => _pods;

    /// <summary>Pod <paramref name="j"/> (1-based) of this node.</summary>
    public Pod Pod(int j) => _pods[j - 1];

    internal void AddPod(Pod pod) => _pods.Add(pod);
}

/// <summary>A host outside the mesh on the lan (10.231.0.200): no agent, no rules.</summary>
internal sealed class ExternalHost(Topology topology)
    : NetnsHost(topology, "ext", $"{topology.Prefix}-ext", IPAddress.Parse("10.231.0.200"));
