namespace NodeMesh.Interop;

/// <summary>A failed libc call: names the call, the errno and what it was applied to.</summary>
internal sealed class InteropException : IOException
{
    public InteropException(string call, int errno, string? subject = null)
        : base($"{call}{(subject is null ? "" : $"({subject})")} failed: errno {errno} ({Describe(errno)}){Hint(call, errno)}")
    {
        Call = call;
        Errno = errno;
    }

    public string Call { get; }

    public int Errno { get; }

    /// <summary>What a permission failure of a call that only root (or a capability) may make needs.</summary>
    private static string Hint(string call, int errno) => (call, errno) switch
    {
        ("setns", 1) => "; entering a network namespace needs root / CAP_NET_ADMIN, CAP_SYS_ADMIN",
        ("setsockopt", 1) => "; this socket option needs root / CAP_NET_ADMIN",
        _ => "",
    };

    private static string Describe(int errno) => errno switch
    {
        1 => "EPERM: operation not permitted",
        2 => "ENOENT: no such file or directory",
        9 => "EBADF: bad file descriptor",
        13 => "EACCES: permission denied",
        22 => "EINVAL: invalid argument",
        92 => "ENOPROTOOPT: protocol not available",
        11 => "EAGAIN: resource temporarily unavailable",
        95 => "EOPNOTSUPP: operation not supported",
        _ => "see errno(3)",
    };
}
