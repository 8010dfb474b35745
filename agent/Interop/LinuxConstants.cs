namespace NodeMesh.Interop;

/// <summary>
/// Linux constants the agent needs (x86_64/arm64 generic ABI). Checked against the C headers by
/// <c>LinuxConstantsTests</c>, which compiles a small C program, rather than trusted from memory.
/// </summary>
internal static class LinuxConstants
{
    public const int CLONE_NEWNET = 0x40000000;
    public const int SOL_SOCKET = 1;
    public const int SOL_IP = 0;
    public const int SO_REUSEADDR = 2;
    public const int SO_LINGER = 13;
    public const int SO_MARK = 36;
    public const int IP_TRANSPARENT = 19;
    public const int SO_ORIGINAL_DST = 80;
    public const int O_RDONLY = 0;
    public const int O_CLOEXEC = 0x80000;
    public const int EINTR = 4;
    public const int EAGAIN = 11;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int AF_INET = 2;
    public const int IPPROTO_TCP = 6;
    public const int TCP_USER_TIMEOUT = 18;
    public const int O_RDWR = 2;
    public const int O_CREAT = 0x40;
    public const int LOCK_EX = 2;
    public const int LOCK_NB = 4;
    public const int EWOULDBLOCK = 11;
    public const int SO_PEERCRED = 17;
    public const int SO_PEERGROUPS = 59;
    public const int ERANGE = 34;

    /// <summary>ioctl on an nsfs file: the CLONE_NEW* type of the namespace (linux/nsfs.h: _IO(0xb7, 0x3)).</summary>
    public const int NS_GET_NSTYPE = 0xb703;
    public const int ENOTTY = 25;
    public const int EINVAL = 22;
}
