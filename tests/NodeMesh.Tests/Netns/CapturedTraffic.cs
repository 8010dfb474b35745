using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>One TCP segment of a capture.</summary>
internal sealed record TcpSegment(IPEndPoint Source, IPEndPoint Destination, uint Sequence, byte Flags, byte[] Payload)
{
    public const byte Syn = 0x02;

    public bool IsSyn => (Flags & Syn) != 0;
}

/// <summary>One direction of a TCP connection, its payload reassembled in sequence order.</summary>
/// <param name="FromStart">True when the SYN was captured, so <paramref name="Data"/> starts at the first byte.</param>
internal sealed record TcpStream(IPEndPoint Source, IPEndPoint Destination, byte[] Data, bool FromStart, bool HasGaps);

/// <summary>
/// What the TLS record layer of the connections to one port shows. Checked: each connection captured from its
/// start opens with a ClientHello, the server answers with a ServerHello whose supported_versions extension
/// selects 0x0304 (TLS 1.3), and every byte of both directions parses as TLS records; application data
/// travels in records of type 0x17 with legacy version 0x0303.
/// </summary>
internal sealed record TlsObservation(
    int Connections,
    int ConnectionsFromStart,
    int ClientHellos,
    int Tls13ServerHellos,
    long ApplicationDataRecords,
    IReadOnlyList<string> Problems)
{
    public override string ToString() =>
        $"{Connections} connections ({ConnectionsFromStart} from their start), {ClientHellos} ClientHello, " +
        $"{Tls13ServerHellos} ServerHello selecting TLS 1.3, {ApplicationDataRecords} application-data records" +
        (Problems.Count == 0 ? "" : "; problems: " + string.Join("; ", Problems));
}

/// <summary>A pcap file read back: packets, TCP segments and reassembled streams, searchable for a marker.</summary>
internal sealed class CapturedTraffic
{
    private const int LinkTypeEthernet = 1;
    private const int LinkTypeLinuxSll = 113;
    private const int LinkTypeLinuxSll2 = 276;

    private readonly byte[] _raw;
    private readonly Lazy<IReadOnlyList<TcpStream>> _streams;

    private CapturedTraffic(string description, byte[] raw, int packets, IReadOnlyList<TcpSegment> segments)
    {
        Description = description;
        _raw = raw;
        Packets = packets;
        Segments = segments;
        _streams = new Lazy<IReadOnlyList<TcpStream>>(Reassemble);
    }

    public string Description { get; }

    public int Packets { get; }

    public IReadOnlyList<TcpSegment> Segments { get; }

    public IReadOnlyList<TcpStream> Streams => _streams.Value;

    public static CapturedTraffic Read(string path, string description)
    {
        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length < 24)
        {
            throw new InvalidDataException($"{path} is not a pcap file ({raw.Length} bytes)");
        }

        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(raw);
        bool bigEndian = magic is 0xd4c3b2a1 or 0x4d3cb2a1;
        if (!bigEndian && magic is not (0xa1b2c3d4 or 0xa1b23c4d))
        {
            throw new InvalidDataException($"{path}: unknown pcap magic 0x{magic:x8}");
        }

        uint U32(int offset) => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(raw.AsSpan(offset)) : BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(offset));
        int linkType = (int)(U32(20) & 0xffff);
        var segments = new List<TcpSegment>();
        int packets = 0;
        for (int offset = 24; offset + 16 <= raw.Length;)
        {
            int included = (int)U32(offset + 8);
            int start = offset + 16;
            if (start + included > raw.Length)
            {
                break; // a packet cut off by stopping tcpdump
            }

            packets++;
            if (ParseFrame(raw.AsSpan(start, included), linkType) is { } segment)
            {
                segments.Add(segment);
            }

            offset = start + included;
        }

        return new CapturedTraffic(description, raw, packets, segments);
    }

    /// <summary>
    /// True if <paramref name="marker"/> appears anywhere: in the raw file (any packet, any header) or in a
    /// reassembled TCP stream (in case it was split across segments).
    /// </summary>
    public bool Contains(string marker) => Contains(Encoding.ASCII.GetBytes(marker));

    /// <inheritdoc cref="Contains(string)"/>
    public bool Contains(byte[] marker) =>
        _raw.AsSpan().IndexOf(marker) >= 0 || Streams.Any(s => s.Data.AsSpan().IndexOf(marker) >= 0);

    /// <summary>TCP packets from or to <paramref name="port"/>.</summary>
    public int TcpPackets(int port) => Segments.Count(s => s.Source.Port == port || s.Destination.Port == port);

    /// <summary>Payload bytes of TCP packets from or to <paramref name="port"/>.</summary>
    public long TcpPayloadBytes(int port) => Segments.Where(s => s.Source.Port == port || s.Destination.Port == port).Sum(s => (long)s.Payload.Length);

    /// <summary>TCP segments with a payload whose source and destination are both in <paramref name="prefix"/> (e.g. "10.240.").</summary>
    public IEnumerable<TcpSegment> PayloadBetween(string prefix) =>
        Segments.Where(s => s.Payload.Length > 0 && s.Source.Address.ToString().StartsWith(prefix, StringComparison.Ordinal)
            && s.Destination.Address.ToString().StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Walks the TLS records of every connection to <paramref name="serverPort"/>.</summary>
    public TlsObservation Tls(int serverPort)
    {
        var problems = new List<string>();
        int connections = 0, fromStart = 0, clientHellos = 0, serverHellos = 0;
        long applicationData = 0;
        foreach (TcpStream toServer in Streams.Where(s => s.Destination.Port == serverPort))
        {
            connections++;
            TcpStream? toClient = Streams.FirstOrDefault(s => s.Source.Equals(toServer.Destination) && s.Destination.Equals(toServer.Source));
            if (!toServer.FromStart || toClient is not { FromStart: true })
            {
                continue; // began before the capture: record boundaries unknown
            }

            fromStart++;
            string name = $"{toServer.Source} -> {toServer.Destination}";
            TlsRecords client = TlsRecords.Walk(toServer.Data);
            TlsRecords server = TlsRecords.Walk(toClient.Data);
            if (client.Error is not null)
            {
                problems.Add($"{name} (client side): {client.Error}");
            }

            if (server.Error is not null)
            {
                problems.Add($"{name} (server side): {server.Error}");
            }

            if (toServer.HasGaps || toClient.HasGaps)
            {
                problems.Add($"{name}: the capture missed segments");
            }

            if (client.FirstHandshakeType == 1)
            {
                clientHellos++;
            }

            if (server.ServerHelloVersion == 0x0304)
            {
                serverHellos++;
            }
            else if (toClient.Data.Length > 0)
            {
                problems.Add($"{name}: ServerHello selected version 0x{server.ServerHelloVersion:x4}, not TLS 1.3 (0x0304)");
            }

            applicationData += client.ApplicationData + server.ApplicationData;
        }

        return new TlsObservation(connections, fromStart, clientHellos, serverHellos, applicationData, problems);
    }

    public override string ToString() =>
        $"capture of {Description}: {Packets} packets, {Segments.Count} TCP segments, {Streams.Count} TCP streams";

    private static TcpSegment? ParseFrame(ReadOnlySpan<byte> frame, int linkType)
    {
        ushort etherType;
        int ipStart;
        switch (linkType)
        {
            case LinkTypeEthernet when frame.Length >= 14:
                etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
                ipStart = 14;
                if (etherType == 0x8100 && frame.Length >= 18)
                {
                    etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[16..]);
                    ipStart = 18;
                }

                break;
            case LinkTypeLinuxSll when frame.Length >= 16:
                etherType = BinaryPrimitives.ReadUInt16BigEndian(frame[14..]);
                ipStart = 16;
                break;
            case LinkTypeLinuxSll2 when frame.Length >= 20:
                etherType = BinaryPrimitives.ReadUInt16BigEndian(frame);
                ipStart = 20;
                break;
            default:
                return null;
        }

        ReadOnlySpan<byte> ip = frame[ipStart..];
        int ipHeader, totalLength, addressLength;
        if (etherType == 0x0800 && ip.Length >= 20 && ip[0] >> 4 == 4 && ip[9] == 6)
        {
            ipHeader = (ip[0] & 0x0f) * 4;
            totalLength = BinaryPrimitives.ReadUInt16BigEndian(ip[2..]);
            addressLength = 4;
        }
        else if (etherType == 0x86dd && ip.Length >= 40 && ip[0] >> 4 == 6 && ip[6] == 6)
        {
            // IPv6 with TCP straight after the fixed header (the only kind these tests send).
            ipHeader = 40;
            totalLength = 40 + BinaryPrimitives.ReadUInt16BigEndian(ip[4..]);
            addressLength = 16;
        }
        else
        {
            return null;
        }

        if (totalLength <= ipHeader || totalLength > ip.Length)
        {
            totalLength = ip.Length; // segmentation offload, or truncated: take what was captured
        }

        ReadOnlySpan<byte> tcp = ip[ipHeader..totalLength];
        if (tcp.Length < 20)
        {
            return null;
        }

        int tcpHeader = (tcp[12] >> 4) * 4;
        if (tcpHeader < 20 || tcpHeader > tcp.Length)
        {
            return null;
        }

        int sourceAt = addressLength == 4 ? 12 : 8;
        var source = new IPEndPoint(new IPAddress(ip.Slice(sourceAt, addressLength)), BinaryPrimitives.ReadUInt16BigEndian(tcp));
        var destination = new IPEndPoint(new IPAddress(ip.Slice(sourceAt + addressLength, addressLength)), BinaryPrimitives.ReadUInt16BigEndian(tcp[2..]));
        return new TcpSegment(source, destination, BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]), tcp[13], tcp[tcpHeader..].ToArray());
    }

    private List<TcpStream> Reassemble()
    {
        var streams = new List<TcpStream>();
        foreach (IGrouping<(IPEndPoint, IPEndPoint), TcpSegment> direction in Segments.GroupBy(s => (s.Source, s.Destination)))
        {
            // A direction may hold several connections if a port pair was reused; each SYN starts a new one.
            var connections = new List<List<TcpSegment>>();
            foreach (TcpSegment segment in direction)
            {
                if (segment.IsSyn || connections.Count == 0)
                {
                    connections.Add([]);
                }

                connections[^1].Add(segment);
            }

            foreach (List<TcpSegment> connection in connections)
            {
                streams.Add(Reassemble(direction.Key.Item1, direction.Key.Item2, connection));
            }
        }

        return streams;
    }

    private static TcpStream Reassemble(IPEndPoint source, IPEndPoint destination, List<TcpSegment> segments)
    {
        TcpSegment? syn = segments.FirstOrDefault(s => s.IsSyn);
        uint first = syn is not null ? syn.Sequence + 1 : segments[0].Sequence;
        var data = new MemoryStream();
        long next = 0;
        bool gaps = false;
        foreach ((long offset, byte[] payload) in segments
            .Where(s => s.Payload.Length > 0)
            .Select(s => ((long)unchecked(s.Sequence - first), s.Payload))
            .Where(s => s.Item1 < int.MaxValue)
            .OrderBy(s => s.Item1))
        {
            long end = offset + payload.Length;
            if (end <= next)
            {
                continue; // retransmission
            }

            if (offset > next)
            {
                gaps = true;
                next = offset;
            }

            data.Write(payload, (int)(next - offset), (int)(end - next));
            next = end;
        }

        return new TcpStream(source, destination, data.ToArray(), syn is not null, gaps);
    }

    /// <summary>The TLS record layer of one direction of a connection.</summary>
    private sealed record TlsRecords(int? FirstHandshakeType, int ServerHelloVersion, long ApplicationData, string? Error)
    {
        public static TlsRecords Walk(byte[] data)
        {
            int? firstHandshake = null;
            int serverHelloVersion = 0;
            long applicationData = 0;
            int offset = 0;
            while (offset + 5 <= data.Length)
            {
                byte type = data[offset];
                ushort version = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(offset + 1));
                int length = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(offset + 3));
                if (type is < 20 or > 23 || version is < 0x0301 or > 0x0304 || length > 16384 + 2048)
                {
                    return new TlsRecords(firstHandshake, serverHelloVersion, applicationData,
                        $"byte {offset} is not a TLS record header ({Convert.ToHexString(data.AsSpan(offset, 5))})");
                }

                if (offset + 5 + length > data.Length)
                {
                    break; // the last record was cut off by the end of the capture
                }

                ReadOnlySpan<byte> body = data.AsSpan(offset + 5, length);
                if (type == 22 && firstHandshake is null && body.Length >= 4)
                {
                    firstHandshake = body[0];
                    if (body[0] == 2)
                    {
                        serverHelloVersion = SelectedVersion(body);
                    }
                }
                else if (type == 23)
                {
                    if (version != 0x0303)
                    {
                        return new TlsRecords(firstHandshake, serverHelloVersion, applicationData, $"application data record with version 0x{version:x4}");
                    }

                    applicationData++;
                }

                offset += 5 + length;
            }

            return new TlsRecords(firstHandshake, serverHelloVersion, applicationData, null);
        }

        /// <summary>The version a ServerHello selects: supported_versions (43) if present, else legacy_version.</summary>
        private static int SelectedVersion(ReadOnlySpan<byte> handshake)
        {
            ReadOnlySpan<byte> hello = handshake[4..];
            if (hello.Length < 35)
            {
                return 0;
            }

            int legacy = BinaryPrimitives.ReadUInt16BigEndian(hello);
            int at = 2 + 32;
            at += 1 + hello[at]; // session id
            at += 2 + 1; // cipher suite, compression
            if (at + 2 > hello.Length)
            {
                return legacy;
            }

            int end = Math.Min(hello.Length, at + 2 + BinaryPrimitives.ReadUInt16BigEndian(hello[at..]));
            at += 2;
            while (at + 4 <= end)
            {
                int type = BinaryPrimitives.ReadUInt16BigEndian(hello[at..]);
                int length = BinaryPrimitives.ReadUInt16BigEndian(hello[(at + 2)..]);
                if (type == 43 && length == 2 && at + 6 <= end)
                {
                    return BinaryPrimitives.ReadUInt16BigEndian(hello[(at + 4)..]);
                }

                at += 4 + length;
            }

            return legacy;
        }
    }
}
