using NodeMesh.Contracts;
using NodeMesh.Interop;

namespace NodeMesh.Api;

/// <summary>
/// One request on the local API with the file descriptors that came with it (the CNI shim's pod namespace). A
/// handler takes the one it keeps; the server closes every descriptor left when the call ends.
/// </summary>
internal sealed class ApiCall(ApiRequest request, List<SafeFileDescriptor> descriptors) : IDisposable
{
    public ApiRequest Request { get; } = request;

    public int DescriptorCount => descriptors.Count;

    /// <summary>The only descriptor sent, now owned by the caller; null if none was sent. More than one is an error.</summary>
    public SafeFileDescriptor? TakeDescriptor()
    {
        if (descriptors.Count > 1)
        {
            throw new InvalidDataException($"'{Printable.Of(Request.Command)}' takes one file descriptor, {descriptors.Count} were sent");
        }

        if (descriptors.Count == 0)
        {
            return null;
        }

        SafeFileDescriptor taken = descriptors[0];
        descriptors.Clear();
        return taken;
    }

    public void Dispose()
    {
        foreach (SafeFileDescriptor descriptor in descriptors)
        {
            descriptor.Dispose();
        }

        descriptors.Clear();
    }
}
