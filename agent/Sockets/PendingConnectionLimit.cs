using System.Net;

namespace NodeMesh.Sockets;

/// <summary>
/// Bounds the connections a listener holds before their peer has authenticated: at most <c>total</c> at once,
/// and at most <c>perAddress</c> from one source address, so idle or slow handshakes from one host cannot take
/// every slot. A connection beyond either limit is to be closed at once by the caller (never queued).
/// </summary>
internal sealed class PendingConnectionLimit
{
    public const string TotalLimit = "total-limit";
    public const string AddressLimit = "address-limit";

    private readonly Dictionary<IPAddress, int> _byAddress = [];
    private readonly Lock _gate = new();
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
}
