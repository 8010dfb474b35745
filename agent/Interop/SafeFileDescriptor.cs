using Microsoft.Win32.SafeHandles;
using Tmds.Linux;

namespace NodeMesh.Interop;

/// <summary>An owned file descriptor (for example a network namespace handle), closed exactly once.</summary>
internal sealed class SafeFileDescriptor : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeFileDescriptor(int fd) : base(ownsHandle: true) => SetHandle(fd);

    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => LibC.close((int)handle) == 0;
}
