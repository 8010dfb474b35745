using System.Text;
using Tmds.Linux;

namespace NodeMesh.Interop;

/// <summary>Changes the group that owns a file (<c>chown(path, -1, gid)</c>).</summary>
internal static unsafe class FileOwnership
{
    public static void SetGroup(string path, uint gid)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (LibC.chown(p, uint.MaxValue, gid) != 0)
            {
                throw new InteropException("chown", LibC.errno, path);
            }
        }
    }
}
