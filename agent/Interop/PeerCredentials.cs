using System.Net.Sockets;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>
/// Who is at the other end of a connected Unix socket, as the kernel recorded it at connect time
/// (<c>SO_PEERCRED</c>, and <c>SO_PEERGROUPS</c> for the supplementary groups): not something the peer can claim.
/// </summary>
internal sealed record PeerCredentials(int Pid, uint Uid, uint Gid, IReadOnlyList<uint> Groups)
{
    private const int MaxGroups = 65536;

    public static unsafe PeerCredentials Of(Socket socket)
    {
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int fd = (int)socket.SafeHandle.DangerousGetHandle();
            ucred cred;
            socklen_t length = (uint)sizeof(ucred);
            if (LibC.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0)
            {
                throw new InteropException("getsockopt", LibC.errno, "SO_PEERCRED");
            }

            return new PeerCredentials(cred.pid, cred.uid, cred.gid, ReadGroups(fd));
        }
        finally
        {
            if (added)
            {
                socket.SafeHandle.DangerousRelease();
            }
        }
    }

    private static unsafe uint[] ReadGroups(int fd)
    {
        int count = 64;
        while (true)
        {
            uint[] groups = new uint[count];
            socklen_t length = (uint)(count * sizeof(uint));
            fixed (uint* p = groups)
            {
                if (LibC.getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p, &length) == 0)
                {
                    return groups[..(int)((uint)length / sizeof(uint))];
                }
            }

            // ERANGE: the kernel wrote the size it needs into length.
            int errno = LibC.errno;
            int needed = (int)((uint)length / sizeof(uint));
            if (errno != ERANGE || needed <= count || needed > MaxGroups)
            {
                throw new InteropException("getsockopt", errno, "SO_PEERGROUPS");
            }

            count = needed;
        }
    }
}
