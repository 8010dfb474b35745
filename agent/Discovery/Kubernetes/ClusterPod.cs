namespace NodeMesh.Discovery.Kubernetes;

/// <summary>A pod as the registry needs it: the facts the shim and the CA use, and whether it runs now.</summary>
/// <param name="Running">status.phase is Running (a pending pod has no address yet; a finished one has none any more).</param>
internal sealed record ClusterPod(PodFacts Facts, bool Running, bool Finished)
{
    public string Key => $"{Facts.Namespace}/{Facts.Name}";
}
