using System.Net.Sockets;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>
/// Passing file descriptors over a connected Unix socket (<c>SCM_RIGHTS</c>): the CNI shim hands the agent a pod's
/// network namespace as an open descriptor, so the agent captures exactly the namespace the runtime made, whatever
/// paths the agent's mount namespace can see. .NET's Socket has no API for ancillary data, hence sendmsg/recvmsg.
/// </summary>
internal static class DescriptorPassing
{
    /// <summary>At most this many descriptors are accepted with one message; a message with more is refused.</summary>
    public const int MaxDescriptors = 4;

    /// <summary>
    /// Sends the first bytes of <paramref name="data"/> with <paramref name="descriptor"/> attached, on a blocking
    /// socket; returns how many bytes went (the caller sends the rest as ordinary data).
    /// </summary>
    public static unsafe int Send(Socket socket, ReadOnlySpan<byte> data, SafeFileDescriptor descriptor)
    {
        if (data.IsEmpty)
        {
            throw new ArgumentException("a descriptor travels with at least one byte", nameof(data));
        }

        bool socketAdded = false;
        bool descriptorAdded = false;
        socket.SafeHandle.DangerousAddRef(ref socketAdded);
        descriptor.DangerousAddRef(ref descriptorAdded);
        try
        {
            int space = (int)(long)LibC.CMSG_SPACE(sizeof(int));
            byte* control = stackalloc byte[space];
            new Span<byte>(control, space).Clear();
            fixed (byte* p = data)
            {
                var iov = new iovec { iov_base = p, iov_len = data.Length };
                var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = space };
                cmsghdr* header = LibC.CMSG_FIRSTHDR(&message);
                header->cmsg_len = ControlLength(sizeof(int));
                header->cmsg_level = LibC.SOL_SOCKET;
                header->cmsg_type = LibC.SCM_RIGHTS;
                *(int*)LibC.CMSG_DATA(header) = descriptor.Fd;
                long sent;
                do
                {
                    sent = LibC.sendmsg((int)socket.SafeHandle.DangerousGetHandle(), &message, MSG_NOSIGNAL);
                }
                while (sent < 0 && LibC.errno == EINTR);
                if (sent < 0)
                {
                    throw new InteropException("sendmsg", LibC.errno, "SCM_RIGHTS");
                }

                return (int)sent;
            }
        }
        finally
        {
            if (descriptorAdded)
            {
                descriptor.DangerousRelease();
            }

            if (socketAdded)
            {
                socket.SafeHandle.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Receives the next bytes and the descriptors that came with them (at most <see cref="MaxDescriptors"/>; a
    /// message that carried more is refused, and every descriptor received is closed). Waits for data without
    /// blocking a thread: a zero-byte receive reports readiness, then recvmsg reads without waiting.
    /// </summary>
    public static async ValueTask<int> ReceiveAsync(Socket socket, Memory<byte> buffer, List<SafeFileDescriptor> descriptors, CancellationToken cancellationToken)
    {
        while (true)
        {
            await socket.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cancellationToken);
            int read = TryReceive(socket, buffer.Span, descriptors);
            if (read >= 0)
            {
                return read;
            }
        }
    }

    /// <summary>
    /// CMSG_LEN: the header and <paramref name="data"/> bytes, unpadded. Tmds.LibC 0.5.0's CMSG_LEN pads the data (it
    /// gives 24 for one descriptor, not 20), which makes the kernel read a second descriptor from the padding.
    /// </summary>
    private static unsafe int ControlLength(int data) => sizeof(cmsghdr) + data;

    /// <summary>The bytes read, or -1 if nothing was there yet.</summary>
    private static unsafe int TryReceive(Socket socket, Span<byte> buffer, List<SafeFileDescriptor> descriptors)
    {
        bool added = false;
        socket.SafeHandle.DangerousAddRef(ref added);
        try
        {
            int space = (int)(long)LibC.CMSG_SPACE(MaxDescriptors * sizeof(int));
            byte* control = stackalloc byte[space];
            new Span<byte>(control, space).Clear();
            fixed (byte* p = buffer)
            {
                var iov = new iovec { iov_base = p, iov_len = buffer.Length };
                var message = new msghdr { msg_iov = &iov, msg_iovlen = 1, msg_control = control, msg_controllen = space };
                long read;
                do
                {
                    read = LibC.recvmsg((int)socket.SafeHandle.DangerousGetHandle(), &message, MSG_DONTWAIT | LibC.MSG_CMSG_CLOEXEC);
                }
                while (read < 0 && LibC.errno == EINTR);
                if (read < 0)
                {
                    int errno = LibC.errno;
                    return errno == EAGAIN ? -1 : throw new InteropException("recvmsg", errno, "the local API socket");
                }

                int before = descriptors.Count;
                for (cmsghdr* header = LibC.CMSG_FIRSTHDR(&message); header != null; header = LibC.CMSG_NXTHDR(&message, header))
                {
                    if (header->cmsg_level != LibC.SOL_SOCKET || header->cmsg_type != LibC.SCM_RIGHTS)
                    {
                        continue;
                    }

                    int count = ((int)(uint)header->cmsg_len - ControlLength(0)) / sizeof(int);
                    int* fds = (int*)LibC.CMSG_DATA(header);
                    for (int i = 0; i < count; i++)
                    {
                        descriptors.Add(new SafeFileDescriptor(fds[i]));
                    }
                }

                if ((message.msg_flags & LibC.MSG_CTRUNC) != 0 || descriptors.Count - before > MaxDescriptors)
                {
                    foreach (SafeFileDescriptor extra in descriptors.Skip(before))
                    {
                        extra.Dispose();
                    }

                    descriptors.RemoveRange(before, descriptors.Count - before);
                    throw new InvalidDataException($"a message carried more than {MaxDescriptors} file descriptors");
                }

                return (int)read;
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
