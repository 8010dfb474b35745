using System.Runtime.InteropServices;

namespace NodeMesh.Interop;

/// <summary>glibc's heap: memory freed by native code (OpenSSL, the runtime) stays with the process until trimmed.</summary>
internal static partial class NativeHeap
{
    /// <summary>Returns free memory at the top and inside the heap's arenas to the kernel. True if any was released.</summary>
    public static bool Trim()
    {
        try
        {
            return MallocTrim(0) != 0;
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc (musl has no malloc_trim): nothing to do.
            return false;
        }
    }

    // Tmds.LibC has no malloc_trim.
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);
}
