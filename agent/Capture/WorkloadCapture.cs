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
    private readonly CancellationTokenSource _stopping = new();

    private WorkloadCapture(Workload workload, NamespaceThread thread, Socket outbound, Socket inbound)
    {
        Workload = workload;
        Thread = thread;
        OutboundListener = outbound;
        InboundListener = inbound;
    }

    public Workload Workload { get; }

    public NamespaceThread Thread { get; }

    public Socket OutboundListener { get; }

    public Socket InboundListener { get; }

    /// <summary>Canceled when the workload is removed or the agent stops: its flows end.</summary>
    public CancellationToken Stopping => _stopping.Token;

    /// <summary>Enters the namespace, opens the listeners there, then installs the rules (listeners first, so
    /// there is never a moment where rules redirect to nothing while the agent is up).</summary>
    public static async Task<WorkloadCapture> StartAsync(Workload workload, CapturePorts ports, CancellationToken cancellationToken)
    {
        NamespaceThread thread = await NamespaceThread.StartAsync(workload.Netns!);
        Socket? outbound = null;
        Socket? inbound = null;
        try
        {
            (outbound, inbound) = await thread.InvokeAsync(() => (
                Listen(new IPEndPoint(IPAddress.Loopback, ports.Outbound), transparent: false),
                Listen(new IPEndPoint(IPAddress.Any, ports.InboundPlaintext), transparent: true)));
            await RuleInstaller.InstallAsync(workload.Netns!, ports, cancellationToken);
            return new WorkloadCapture(workload, thread, outbound, inbound);
        }
        catch
        {
            outbound?.Dispose();
            inbound?.Dispose();
            thread.Dispose();
            throw;
        }
    }

    /// <summary>A new TCP socket inside the workload's namespace, marked so the capture rules skip it.</summary>
    public Task<Socket> CreateSocketAsync(bool transparent) => Thread.InvokeAsync(() =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            SocketOptions.SetMark(socket, CaptureRules.AgentMark);
            // If the agent dies, the workload sees a reset, never a clean end of a truncated flow.
            SocketOptions.SetAbortOnClose(socket);
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
    });

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
        Thread.Dispose();
        _stopping.Dispose();
    }
}
