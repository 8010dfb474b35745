using System.Net.Sockets;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>
/// accept4 on a listener now, without waiting. .NET's socket engine waits for an epoll readiness edge after an
/// accept that failed (EMFILE…); a connection that was already queued raises no new edge, so a listener with
/// nothing new arriving would never take it. The accept loop asks the kernel itself before it waits again.
/// </summary>
internal static class ImmediateAccept
{
    /// <summary>The connection at the head of the queue, or null when the queue is empty. For listeners used with async accepts.</summary>
    /// <exception cref="SocketException">The accept (or making the listener non-blocking) failed for another reason (out of descriptors…).</exception>
    public static unsafe Socket? TryAccept(Socket listener)
    {
        int fd;
        int errno = 0;
        bool added = false;
        listener.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int listenerFd = (int)listener.SafeHandle.DangerousGetHandle();

            // .NET makes the fd non-blocking at its first async accept; a listener not used that way yet must
            // not make this call wait.
            int flags = LibC.fcntl(listenerFd, F_GETFL, 0);
            if (flags < 0 || ((flags & O_NONBLOCK) == 0 && LibC.fcntl(listenerFd, F_SETFL, flags | O_NONBLOCK) < 0))
            {
                throw new SocketException((int)ToSocketError(LibC.errno));
            }

            do
            {
                fd = LibC.accept4(listenerFd, null, null, SOCK_CLOEXEC);
                errno = fd < 0 ? LibC.errno : 0;
            }
            while (fd < 0 && errno == EINTR);
        }
        finally
        {
            if (added)
            {
                listener.SafeHandle.DangerousRelease();
            }
        }

        if (fd >= 0)
        {
            return new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        }

        return errno == EAGAIN ? null : throw new SocketException((int)ToSocketError(errno));
    }

    internal static SocketError ToSocketError(int errno) => errno switch
    {
        EMFILE or ENFILE => SocketError.TooManyOpenSockets,
        ENOBUFS or ENOMEM => SocketError.NoBufferSpaceAvailable,
        ECONNABORTED => SocketError.ConnectionAborted,
        _ => SocketError.SocketError,
    };
}
