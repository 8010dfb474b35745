using System.Net;
using System.Net.NetworkInformation;
using NodeMesh.Capture;
using NodeMesh.Interop;

namespace NodeMesh.Pods;

/// <summary>A network namespace found on the node, held open, with the addresses of its interfaces.</summary>
internal sealed record FoundNamespace(string Path, SafeFileDescriptor Handle, NamespaceId Id, IReadOnlyList<IPAddress> Addresses) : IDisposable
{
    public void Dispose() => Handle.Dispose();
}

/// <summary>
/// Finds the network namespaces the container runtime keeps in a directory (containerd and CRI-O bind-mount each pod's
/// under <c>/var/run/netns</c>) and reads their addresses, so the reconcile can match a pod the API server lists to
/// its namespace by address. Read-only: nothing is changed in a namespace here.
/// </summary>
internal static class NamespaceScan
{
    /// <param name="skip">Namespaces not to look into (the agent's own, those already captured).</param>
    public static async Task<List<FoundNamespace>> ScanAsync(string directory, Func<NamespaceId, bool> skip, Action<string, string> unreadable)
    {
        var found = new List<FoundNamespace>();
        if (!Directory.Exists(directory))
        {
            return found;
        }

        foreach (string path in Directory.EnumerateFiles(directory).Order(StringComparer.Ordinal))
        {
            SafeFileDescriptor? handle = null;
            try
            {
                handle = NetworkNamespace.Open(path);
                NamespaceId id = NetworkNamespace.Identify(handle, path);
                if (NetworkNamespace.NotANetworkNamespace(handle) is not null || skip(id))
                {
                    handle.Dispose();
                    continue;
                }

                // The thread owns a handle of its own; this one is kept for the capture that may follow.
                using NamespaceThread thread = await NamespaceThread.StartAsync(NetworkNamespace.Open(NetworkNamespace.HeldPath(handle)), path, check: null);
                IReadOnlyList<IPAddress> addresses = await thread.InvokeAsync(ReadAddresses);
                found.Add(new FoundNamespace(path, handle, id, addresses));
                handle = null;
            }
            catch (Exception ex) when (ex is InteropException or IOException or UnauthorizedAccessException or NetworkInformationException or InvalidOperationException)
            {
                unreadable(path, ex.Message);
            }
            finally
            {
                handle?.Dispose();
            }
        }

        return found;
    }

    /// <summary>The addresses of every interface of the calling thread's namespace (getifaddrs follows the thread's namespace).</summary>
    private static List<IPAddress> ReadAddresses() =>
        [.. NetworkInterface.GetAllNetworkInterfaces().SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(a => a.Address)];
}
