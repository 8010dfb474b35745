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

    public IPEndPoint EndPoint(int port) => new(Ip, port);

    public override string ToString() => $"{Name} ({Ip}, {Namespace})";

    /// <summary>Runs <paramref name="create"/> on a thread inside this namespace (for sockets born here).</summary>
    public async Task<T> InNamespaceAsync<T>(Func<T> create) => await (await _thread.Value).InvokeAsync(create);

    /// <summary>A TCP server on 0.0.0.0:<paramref name="port"/> inside this namespace.</summary>
    public async Task<TcpTestServer> StartTcpServerAsync(int port, ServerMode mode)
    {
        Socket listener = await InNamespaceAsync(() =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(IPAddress.Any, port));
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
        Socket socket = await InNamespaceAsync(() => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });
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
