using NodeMesh.Interop;

namespace NodeMesh.State;

/// <summary>
/// Whether a namespace, known by its identity (device and inode), may be a workload's: not the agent's own (its
/// rules would capture the agent itself), and, for a registration saved earlier, still the namespace that was
/// registered: a path such as <c>/proc/PID/ns/net</c> names another namespace once the PID is reused.
/// </summary>
internal static class WorkloadNamespace
{
    /// <summary>Null if the namespace may be captured for the workload, else why not.</summary>
    public static string? Refusal(string workload, string path, NamespaceId found, NamespaceId? expected, NamespaceId agentOwn)
    {
        if (found == agentOwn)
        {
            return $"workload '{workload}': {path} is the agent's own network namespace ({found}); a workload needs a namespace of its own";
        }

        if (expected is { } registered && registered != found)
        {
            return $"workload '{workload}': {path} now names another network namespace: registered with {registered}, found {found}; " +
                "register the workload again with its current namespace";
        }

        return null;
    }
}
