using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using NodeMesh.Interop;
using NodeMesh.Telemetry;

namespace NodeMesh.Sockets;

/// <summary>
/// Bounds the connections a listener holds before their peer has authenticated: at most <c>total</c> at once,
/// and at most <c>perAddress</c> from one source address, so idle or slow handshakes from one host cannot take
/// every slot. A connection beyond either limit is to be closed at once by the caller (never queued).
/// </summary>
internal sealed partial class PendingConnectionLimit
{
    public const string TotalLimit = "total-limit";
    public const string AddressLimit = "address-limit";

    private readonly Dictionary<IPAddress, int> _byAddress = [];
    private readonly Lock _gate = new();
    private readonly LogThrottle _shedLog = new(TimeSpan.FromSeconds(10));
    private int _total;

    public PendingConnectionLimit(int total, int perAddress)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(total, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(perAddress, 1);
        Total = total;
        PerAddress = perAddress;
    }

    public int Total { get; }

    public int PerAddress { get; }

    /// <summary>Connections admitted and not yet released.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _total;
            }
        }
    }

    /// <summary>
    /// Takes a slot for an accepted <paramref name="socket"/>'s peer; if a limit refuses it, the socket is reset and
    /// closed at once, counted (<paramref name="metrics"/>, label <paramref name="listener"/>) and logged at most
    /// once per 10 s. The caller gives the slot back with <see cref="Exit"/> on <paramref name="remote"/>'s address.
    /// </summary>
    public bool TryAdmit(Socket socket, string listener, MeshMetrics? metrics, ILogger logger, [NotNullWhen(true)] out IPEndPoint? remote)
    {
        remote = socket.RemoteEndPoint as IPEndPoint;
        string? refusal = "no peer address";
        if (remote is not null && TryEnter(remote.Address, out refusal))
        {
            return true;
        }

        metrics?.ConnectionShed(listener, refusal!);
        if (_shedLog.ShouldLog(out int held))
        {
            Log.Shed(logger, listener, remote?.ToString() ?? "?", refusal!, Count, held);
        }

        try
        {
            SocketOptions.SetAbortOnClose(socket);
        }
        catch (Exception ex) when (ex is SocketException or InteropException or ObjectDisposedException)
        {
            // Already gone: nothing to reset.
        }

        socket.Dispose();
        remote = null;
        return false;
    }

    /// <summary>Takes a slot for <paramref name="address"/>, or says which limit refused it (<see cref="TotalLimit"/>, <see cref="AddressLimit"/>).</summary>
    public bool TryEnter(IPAddress address, out string? refusal)
    {
        address = Normalize(address);
        lock (_gate)
        {
            if (_total >= Total)
            {
                refusal = TotalLimit;
                return false;
            }

            _byAddress.TryGetValue(address, out int fromAddress);
            if (fromAddress >= PerAddress)
            {
                refusal = AddressLimit;
                return false;
            }

            _byAddress[address] = fromAddress + 1;
            _total++;
            refusal = null;
            return true;
        }
    }

    /// <summary>Gives back a slot taken by <see cref="TryEnter"/>.</summary>
    public void Exit(IPAddress address)
    {
        address = Normalize(address);
        lock (_gate)
        {
            if (!_byAddress.TryGetValue(address, out int fromAddress))
            {
                throw new InvalidOperationException($"no pending connection from {address} to release");
            }

            if (fromAddress == 1)
            {
                _byAddress.Remove(address);
            }
            else
            {
                _byAddress[address] = fromAddress - 1;
            }

            _total--;
        }
    }

    private static IPAddress Normalize(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private static partial class Log
    {
        [LoggerMessage(EventId = 802, Level = LogLevel.Warning,
            Message = "{Listener} listener: connection from {Remote} closed before authentication: {Limit} reached ({Pending} pending; {Held} more closed since the last report)")]
        public static partial void Shed(ILogger logger, string listener, string remote, string limit, int pending, int held);
    }
}
