using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using NodeMesh.Interop;
using NodeMesh.State;

namespace NodeMesh.Capture;

/// <summary>
/// A local workload under capture: the thread inside its namespace, the two listeners created there, and
/// the rules installed there. Every socket the agent opens inside the namespace carries the agent mark.
/// </summary>
internal sealed class WorkloadCapture : IAsyncDisposable
{
    private const int SpareSockets = 16;

    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentQueue<Socket> _spare = new();
    private int _refilling;

    private WorkloadCapture(Workload workload, NamespaceThread thread, Socket outbound, Socket inbound, Ipv6Plan ipv6)
    {
        Workload = workload;
        Thread = thread;
        OutboundListener = outbound;
        InboundListener = inbound;
        Ipv6 = ipv6;
    }

    public Workload Workload { get; }

    /// <summary>What the capture does about IPv6 in the namespace (refused, or off there).</summary>
    public Ipv6Plan Ipv6 { get; }

    public NamespaceThread Thread { get; }

    public Socket OutboundListener { get; }

    public Socket InboundListener { get; }

    /// <summary>Canceled when the workload is removed or the agent stops: its flows end.</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Enters the namespace, opens the listeners there, then installs the rules (listeners first, so
    /// there is never a moment where rules redirect to nothing while the agent is up).</summary>
    /// <param name="checkNamespace">Refuses the namespace by its identity (throws), before anything is created in it.</param>
    /// <param name="handle">The namespace, already open (handed over by the CNI shim; owned from now on), or null to open <see cref="Workload.Netns"/>.</param>
    public static async Task<WorkloadCapture> StartAsync(Workload workload, SafeFileDescriptor? handle, CapturePorts ports, RuleOwner owner,
        Action<NamespaceId> checkNamespace, CancellationToken cancellationToken)
    {
        NamespaceThread thread = handle is null
            ? await NamespaceThread.StartAsync(workload.Netns!, checkNamespace)
            : await NamespaceThread.StartAsync(handle, workload.Netns!, checkNamespace);
        Socket? outbound = null;
        Socket? inbound = null;
        try
        {
            List<string?>? disableIpv6;
            (outbound, inbound, disableIpv6) = await thread.InvokeAsync(() => (
                Listen(new IPEndPoint(IPAddress.Loopback, ports.Outbound), transparent: false),
                Listen(new IPEndPoint(IPAddress.Any, ports.InboundPlaintext), transparent: true),
                ReadDisableIpv6()));
            Ipv6Plan ipv6 = await RuleInstaller.InstallAsync(thread, ports, owner, Ipv6Rules.IsEnabled(disableIpv6), cancellationToken);
            return new WorkloadCapture(workload, thread, outbound, inbound, ipv6);
        }
        catch
        {
            outbound?.Dispose();
            inbound?.Dispose();
            thread.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A new TCP socket inside the workload's namespace, marked so the capture rules skip it, and set to reset
    /// (never end cleanly) if the agent dies. Sockets come from a small stock that the namespace thread
    /// refills in batches, so a new flow does not wait for a thread hop and two setns calls.
    /// </summary>
    public async ValueTask<Socket> CreateSocketAsync(bool transparent)
    {
        if (!_spare.TryDequeue(out Socket? socket))
        {
            List<Socket> batch = await Thread.InvokeAsync(() => CreateBatch(SpareSockets));
            socket = batch[0];
            foreach (Socket extra in batch.Skip(1))
            {
                _spare.Enqueue(extra);
            }
        }
        else if (_spare.Count < SpareSockets / 2 && Interlocked.Exchange(ref _refilling, 1) == 0)
        {
            _ = RefillAsync();
        }

        try
        {
            if (transparent)
            {
                SocketOptions.SetTransparent(socket);
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task RefillAsync()
    {
        try
        {
            foreach (Socket socket in await Thread.InvokeAsync(() => CreateBatch(SpareSockets - _spare.Count)))
            {
                _spare.Enqueue(socket);
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or InteropException or SocketException)
        {
            // The workload is going away; the next caller creates its socket directly and sees the error.
        }
        finally
        {
            Volatile.Write(ref _refilling, 0);
        }
    }

    private static List<Socket> CreateBatch(int count)
    {
        var sockets = new List<Socket>(Math.Max(1, count));
        try
        {
            for (int i = 0; i < Math.Max(1, count); i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                sockets.Add(socket);
                SocketOptions.SetMark(socket, CaptureRules.AgentMark);
                SocketOptions.SetAbortOnClose(socket);
            }

            return sockets;
        }
        catch
        {
            sockets.ForEach(s => s.Dispose());
            throw;
        }
    }

    /// <summary>
    /// The disable_ipv6 values of every interface (and "all", "default") of the calling thread's namespace:
    /// /proc/sys/net follows the namespace of the thread that reads it. Null if the kernel has no IPv6 there.
    /// </summary>
    private static List<string?>? ReadDisableIpv6()
    {
        const string conf = "/proc/sys/net/ipv6/conf";
        if (!Directory.Exists(conf))
        {
            return null;
        }

        var values = new List<string?>();
        foreach (string dir in Directory.EnumerateDirectories(conf))
        {
            try
            {
                values.Add(File.ReadAllText(Path.Combine(dir, "disable_ipv6")));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                values.Add(null); // counts as on: never assume IPv6 is off without having read it
            }
        }

        return values;
    }

    private static Socket Listen(IPEndPoint endPoint, bool transparent)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            SocketOptions.SetReuseAddressOnly(socket);
            SocketOptions.SetMark(socket, CaptureRules.AgentMark);
            if (transparent)
            {
                SocketOptions.SetTransparent(socket);
            }

            socket.Bind(endPoint);
            socket.Listen(1024);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Closes the listeners and ends the workload's flows; the rules stay unless the caller removes them.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        OutboundListener.Dispose();
        InboundListener.Dispose();
        while (_spare.TryDequeue(out Socket? spare))
        {
            spare.Dispose();
        }

        Thread.Dispose();
        _stopping.Dispose();
    }
}
