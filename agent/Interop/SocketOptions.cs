using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>Typed wrappers for the socket options the data path needs and the BCL does not expose.</summary>
internal static unsafe class SocketOptions
{
    /// <summary>Marks every packet of the socket so the capture rules skip it (SO_MARK, needs CAP_NET_ADMIN).</summary>
    public static void SetMark(Socket socket, uint mark) => SetInt(socket, SOL_SOCKET, SO_MARK, unchecked((int)mark), "SO_MARK");

    /// <summary>
    /// SO_REUSEADDR alone. (.NET's ReuseAddress option also sets SO_REUSEPORT on Linux, which would let a second
    /// agent bind the same ports silently and share the connections.)
    /// </summary>
    public static void SetReuseAddressOnly(Socket socket) => SetInt(socket, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");

    /// <summary>Allows binding to a non-local address (the real client's) and accepting TPROXY'd connections.</summary>
    public static void SetTransparent(Socket socket) => SetInt(socket, SOL_IP, IP_TRANSPARENT, 1, "IP_TRANSPARENT");

    /// <summary>
    /// SO_LINGER {on, 0}: if the process dies, the kernel sends RST instead of FIN, so a truncated transfer is
    /// never taken as complete. Cleared again by <see cref="SetGracefulClose"/> before an orderly close.
    /// </summary>
    public static void SetAbortOnClose(Socket socket) => SetLinger(socket, on: true);

    public static void SetGracefulClose(Socket socket) => SetLinger(socket, on: false);

    /// <summary>
    /// TCP_USER_TIMEOUT: the connection fails when sent data stays unacknowledged this long, so a peer that
    /// vanished is noticed even while a write is blocked (TCP's own retransmission gives up only after minutes).
    /// </summary>
    public static void SetUserTimeout(Socket socket, TimeSpan timeout) =>
        SetInt(socket, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue), "TCP_USER_TIMEOUT");

    /// <summary>The destination the client asked for before iptables REDIRECT rewrote it (SO_ORIGINAL_DST).</summary>
    public static IPEndPoint GetOriginalDestination(Socket socket)
    {
        byte* buffer = stackalloc byte[16];
        socklen_t length = 16;
        int rc;
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)socket.SafeHandle.DangerousGetHandle();
            do
            {
                rc = LibC.getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, buffer, &length);
            }
            while (rc != 0 && LibC.errno == EINTR);
        }
        finally
        {
            if (added)
            {
                socket.SafeHandle.DangerousRelease();
            }
        }

        if (rc != 0)
        {
            throw new InteropException("getsockopt", LibC.errno, "SO_ORIGINAL_DST");
        }

        return DecodeSockaddrIn(new ReadOnlySpan<byte>(buffer, 16));
    }

    /// <summary>
    /// Sends what the socket's buffer takes right now without waiting (MSG_DONTWAIT): the number of bytes
    /// taken, 0 if the buffer is full. Lets the tunnel read loop hand bytes straight to a workload's socket.
    /// </summary>
    public static int SendNow(Socket socket, ReadOnlySpan<byte> data)
    {
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)socket.SafeHandle.DangerousGetHandle();
            fixed (byte* p = data)
            {
                long rc;
                do
                {
                    rc = LibC.send(fd, p, (size_t)(ulong)data.Length, MSG_DONTWAIT | MSG_NOSIGNAL);
                }
                while (rc < 0 && LibC.errno == EINTR);
                if (rc >= 0)
                {
                    return (int)rc;
                }

                int errno = LibC.errno;
                return errno == EAGAIN ? 0 : throw new InteropException("send", errno, "workload socket");
            }
        }
        finally
        {
            if (added)
            {
                socket.SafeHandle.DangerousRelease();
            }
        }
    }

    /// <summary>Decodes a <c>struct sockaddr_in</c> (family, port in network order, address).</summary>
    internal static IPEndPoint DecodeSockaddrIn(ReadOnlySpan<byte> sockaddr)
    {
        ushort family = BinaryPrimitives.ReadUInt16LittleEndian(sockaddr);
        if (family != AF_INET)
        {
            throw new InteropException("getsockopt", 97, $"SO_ORIGINAL_DST returned address family {family}");
        }

        int port = BinaryPrimitives.ReadUInt16BigEndian(sockaddr[2..]);
        return new IPEndPoint(new IPAddress(sockaddr.Slice(4, 4)), port);
    }

    private static void SetLinger(Socket socket, bool on)
    {
        // struct linger { int l_onoff; int l_linger; }
        int* value = stackalloc int[2];
        value[0] = on ? 1 : 0;
        value[1] = 0;
        Set(socket, SOL_SOCKET, SO_LINGER, value, 8, "SO_LINGER");
    }

    private static void SetInt(Socket socket, int level, int name, int value, string what) =>
        Set(socket, level, name, &value, sizeof(int), what);

    private static void Set(Socket socket, int level, int name, void* value, int length, string what)
    {
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)socket.SafeHandle.DangerousGetHandle();
            int rc;
            do
            {
                rc = LibC.setsockopt(fd, level, name, value, (uint)length);
            }
            while (rc != 0 && LibC.errno == EINTR);
            if (rc != 0)
            {
                throw new InteropException("setsockopt", LibC.errno, what);
            }
        }
        finally
        {
            if (added)
            {
                socket.SafeHandle.DangerousRelease();
            }
        }
    }
}
