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
