using System.Text;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>
/// Opens network namespace handles and switches the calling thread into one with <c>setns(2)</c>.
/// setns changes only the calling OS thread, so callers use it from a dedicated thread
/// (<see cref="Capture.NamespaceThread"/>), never from the thread pool.
/// </summary>
internal static unsafe class NetworkNamespace
{
    /// <summary>The namespace of the calling thread.</summary>
    public static SafeFileDescriptor OpenCurrent() => Open("/proc/thread-self/ns/net");

    public static SafeFileDescriptor Open(string path)
    {
        int fd = OpenRaw(path);
        if (fd < 0)
        {
            throw new InteropException("open", LibC.errno, path);
        }

        return new SafeFileDescriptor(fd);
    }

    private static int OpenRaw(string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            int fd;
            do
            {
                fd = LibC.open(p, O_RDONLY | O_CLOEXEC, default);
            }
            while (fd < 0 && LibC.errno == EINTR);
            return fd;
        }
    }

    /// <summary>
    /// What a namespace handle names: the device and inode of its nsfs file (fstat). Two paths name the same
    /// namespace exactly when these are equal, so a saved path can be checked before it is trusted again.
    /// </summary>
    public static NamespaceId Identify(SafeFileDescriptor ns, string description)
    {
        bool added = false;
        ns.DangerousAddRef(ref added);
        try
        {
            stat buffer;
            int rc;
            do
            {
                rc = LibC.fstat(ns.Fd, &buffer);
            }
            while (rc != 0 && LibC.errno == EINTR);
            if (rc != 0)
            {
                throw new InteropException("fstat", LibC.errno, description);
            }

            return new NamespaceId((ulong)buffer.st_dev, (ulong)buffer.st_ino);
        }
        finally
        {
            if (added)
            {
                ns.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Null if <paramref name="handle"/> is a network namespace, else what it is instead: a descriptor someone hands the
    /// agent (the CNI shim's) is checked by asking the kernel (NS_GET_NSTYPE), not trusted for its path.
    /// </summary>
    public static string? NotANetworkNamespace(SafeFileDescriptor handle)
    {
        bool added = false;
        handle.DangerousAddRef(ref added);
        try
        {
            int type = LibC.ioctl(handle.Fd, NS_GET_NSTYPE, null);
            if (type < 0)
            {
                int errno = LibC.errno;
                return errno == ENOTTY || errno == EINVAL ? "not a namespace" : $"not a namespace ({new InteropException("ioctl", errno, "NS_GET_NSTYPE").Message})";
            }

            return type == CLONE_NEWNET ? null : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"a namespace of another kind (type 0x{type:x}), not a network namespace");
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    /// <summary>The identity of the namespace at <paramref name="path"/> (opened and closed again).</summary>
    public static NamespaceId Identify(string path)
    {
        using SafeFileDescriptor ns = Open(path);
        return Identify(ns, path);
    }

    /// <summary>
    /// A path that names exactly the namespace this process holds open in <paramref name="ns"/>
    /// (<c>/proc/PID/fd/N</c>, a link to the fd's own file), for a child such as <c>nsenter --net=</c>. Unlike the
    /// registration path it cannot come to name another namespace while the handle is held.
    /// </summary>
    public static string HeldPath(SafeFileDescriptor ns) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"/proc/{Environment.ProcessId}/fd/{ns.Fd}");

    /// <summary>Moves the calling thread into the namespace held by <paramref name="ns"/>.</summary>
    public static void Enter(SafeFileDescriptor ns, string description)
    {
        bool added = false;
        ns.DangerousAddRef(ref added);
        try
        {
            if (LibC.setns(ns.Fd, CLONE_NEWNET) != 0)
            {
                throw new InteropException("setns", LibC.errno, description);
            }
        }
        finally
        {
            if (added)
            {
                ns.DangerousRelease();
            }
        }
    }
}

/// <summary>A network namespace's identity: the device and inode of its nsfs file.</summary>
internal readonly record struct NamespaceId(ulong Device, ulong Inode)
{
    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"inode {Inode} (device {Device})");
}
