using System.Net;
using System.Net.Sockets;
using k8s.Models;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// Reads the API server's objects into the little the registry needs of them (pure). The full objects are not
/// kept: a pod's spec and status are kilobytes, and a cluster has thousands.
/// </summary>
internal static class KubernetesObjects
{
    private static readonly IReadOnlyDictionary<string, string> None = new Dictionary<string, string>();

    public static ClusterPod Pod(V1Pod pod)
    {
        V1ObjectMeta meta = pod.Metadata ?? new V1ObjectMeta();
        var ips = new List<IPAddress>();
        foreach (string? ip in (pod.Status?.PodIPs?.Select(p => p.Ip) ?? []).Append(pod.Status?.PodIP))
        {
            if (IPAddress.TryParse(ip, out IPAddress? parsed) && !ips.Contains(parsed))
            {
                ips.Add(parsed);
            }
        }

        string phase = pod.Status?.Phase ?? "";
        var facts = new PodFacts(
            meta.NamespaceProperty ?? "default",
            meta.Name ?? "",
            meta.Uid ?? "",
            // The API server defaults it; an object without one (a test's, an old one) runs as "default".
            string.IsNullOrEmpty(pod.Spec?.ServiceAccountName) ? "default" : pod.Spec.ServiceAccountName,
            string.IsNullOrEmpty(pod.Spec?.NodeName) ? null : pod.Spec.NodeName,
            ips,
            meta.Labels is { } labels ? new Dictionary<string, string>(labels) : None,
            meta.Annotations is { } annotations ? new Dictionary<string, string>(annotations) : None,
            pod.Spec?.HostNetwork == true);
        return new ClusterPod(facts, Running: phase == "Running", Finished: phase is "Succeeded" or "Failed");
    }

    public static ClusterService Service(V1Service service)
    {
        V1ObjectMeta meta = service.Metadata ?? new V1ObjectMeta();
        IEnumerable<string?> given = service.Spec?.ClusterIPs is { Count: > 0 } many ? many : [service.Spec?.ClusterIP];
        List<IPAddress> ips = [.. given.Select(ip => IPAddress.TryParse(ip, out IPAddress? a) ? a : null).OfType<IPAddress>().Where(a => a.AddressFamily == AddressFamily.InterNetwork)];
        var ports = new List<ClusterServicePort>();
        foreach (V1ServicePort port in service.Spec?.Ports ?? [])
        {
            // TCP only: the agent captures TCP.
            if (port.Protocol is not (null or "" or "TCP"))
            {
                continue;
            }

            string? target = port.TargetPort?.Value;
            int number = int.TryParse(target, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) ? n : 0;
            ports.Add(new ClusterServicePort(port.Name ?? "", port.Port, number, number == 0 && !string.IsNullOrEmpty(target) ? target : null));
        }

        return new ClusterService(meta.NamespaceProperty ?? "default", meta.Name ?? "", ips, ports);
    }

    public static ClusterEndpointSlice EndpointSlice(V1EndpointSlice slice)
    {
        V1ObjectMeta meta = slice.Metadata ?? new V1ObjectMeta();
        string service = meta.Labels?.TryGetValue("kubernetes.io/service-name", out string? owner) == true ? owner : "";
        List<ClusterSlicePort> ports = [.. (slice.Ports ?? []).Where(p => p.Port is > 0 and <= 65535 && p.Protocol is null or "" or "TCP")
            .Select(p => new ClusterSlicePort(p.Name ?? "", p.Port!.Value))];
        List<ClusterEndpoint> endpoints = [.. (slice.Endpoints ?? []).Select(e => new ClusterEndpoint(
            e.TargetRef?.Kind == "Pod" ? e.TargetRef.Name : null,
            e.TargetRef?.NamespaceProperty ?? meta.NamespaceProperty,
            // Unset means ready (the API's own rule for consumers).
            e.Conditions?.Ready ?? true))];
        return new ClusterEndpointSlice(meta.NamespaceProperty ?? "default", meta.Name ?? "", service, ports, endpoints);
    }

    public static ClusterNode Node(V1Node node)
    {
        IPAddress? internalIp = (node.Status?.Addresses ?? []).Where(a => a.Type == "InternalIP")
            .Select(a => IPAddress.TryParse(a.Address, out IPAddress? ip) ? ip : null)
            .FirstOrDefault(ip => ip?.AddressFamily == AddressFamily.InterNetwork);
        return new ClusterNode(node.Metadata?.Name ?? "", internalIp);
    }
}
