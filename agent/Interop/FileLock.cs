using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;
using static NodeMesh.Interop.LinuxConstants;

namespace NodeMesh.Interop;

/// <summary>
/// An exclusive advisory lock (<c>flock(2)</c>) on a file, held as long as the returned handle is open. The kernel
/// drops it when the process dies, however it dies, so a stale lock file never blocks a restart.
/// </summary>
internal static unsafe partial class FileLock
{
    /// <summary>
    /// Opens (creating, mode 0600) and locks <paramref name="path"/> without waiting, then writes this process's
    /// id into it. Null if another process holds the lock.
    /// </summary>
    public static SafeFileDescriptor? TryAcquire(string path)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        int fd;
        fixed (byte* p = bytes)
        {
            do
            {
                fd = LibC.open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0x180);
            }
            while (fd < 0 && LibC.errno == EINTR);
        }

        if (fd < 0)
        {
            throw new InteropException("open", LibC.errno, path);
        }

        var handle = new SafeFileDescriptor(fd);
        int rc;
        int errno;
        do
        {
            rc = Flock(fd, LOCK_EX | LOCK_NB);
            errno = rc == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
        while (rc != 0 && errno == EINTR);
        if (rc != 0)
        {
            handle.Dispose();
            return errno == EWOULDBLOCK ? null : throw new InteropException("flock", errno, path);
        }

        // Only the holder writes, so the content is the holder's pid for anyone who is refused.
        byte[] pid = Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
        fixed (byte* p = pid)
        {
            if (LibC.ftruncate(fd, 0) != 0 || LibC.pwrite(fd, p, (size_t)(ulong)pid.Length, 0) != pid.Length)
            {
                errno = LibC.errno;
                handle.Dispose();
                throw new InteropException("write", errno, path);
            }
        }

        return handle;
    }

    /// <summary>
    /// What the holder wrote into a lock file (its pid), read without taking a lock: .NET's FileStream takes a
    /// shared flock on open and would fail on a file held exclusively. Null if it cannot be read.
    /// </summary>
    public static string? ReadHolder(string path)
    {
        byte[] name = Encoding.UTF8.GetBytes(path + "\0");
        byte* buffer = stackalloc byte[32];
        int fd;
        fixed (byte* p = name)
        {
            fd = LibC.open(p, O_RDONLY | O_CLOEXEC, 0);
        }

        if (fd < 0)
        {
            return null;
        }

        using var handle = new SafeFileDescriptor(fd);
        long read = LibC.pread(fd, buffer, 32, 0);
        return read > 0 ? Encoding.ASCII.GetString(buffer, (int)read) : null;
    }

    // Tmds.LibC has no flock.
    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(int fd, int operation);
}
