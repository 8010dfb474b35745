using k8s.Models;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>Official model objects as a cluster would have them, in few words.</summary>
internal static class KubernetesTestObjects
{
    public static V1Pod Pod(string @namespace, string name, string? node, string? ip, string serviceAccount = "default", string phase = "Running", bool hostNetwork = false,
        IDictionary<string, string>? labels = null, string? uid = null) => new()
    {
        Metadata = new V1ObjectMeta { NamespaceProperty = @namespace, Name = name, Uid = uid, Labels = labels ?? new Dictionary<string, string> { ["app"] = name } },
        Spec = new V1PodSpec
        {
            NodeName = node, ServiceAccountName = serviceAccount, HostNetwork = hostNetwork,
            Containers = [new V1Container { Name = "main", Image = "registry.example/app:1", Ports = [new V1ContainerPort { Name = "http", ContainerPort = 8080 }] }],
        },
        Status = new V1PodStatus { Phase = phase, PodIP = ip, PodIPs = ip is null ? null : [new V1PodIP { Ip = ip }] },
    };

    /// <param name="ports">(port, targetPort) where targetPort is a number or a container port's name.</param>
    public static V1Service Service(string @namespace, string name, string clusterIp, params (string Name, int Port, string Target)[] ports) => new()
    {
        Metadata = new V1ObjectMeta { NamespaceProperty = @namespace, Name = name },
        Spec = new V1ServiceSpec
        {
            ClusterIP = clusterIp, ClusterIPs = clusterIp == "None" ? null : [clusterIp], Type = "ClusterIP",
            Ports = [.. ports.Select(p => new V1ServicePort
            {
                Name = p.Name, Port = p.Port, Protocol = "TCP",
                TargetPort = int.TryParse(p.Target, out int n) ? (IntOrString)n : (IntOrString)p.Target,
            })],
        },
    };

    public static V1EndpointSlice Slice(string @namespace, string name, string service, (string Name, int Port)[] ports, params (string Pod, string Ip, bool Ready)[] endpoints) => new()
    {
        Metadata = new V1ObjectMeta { NamespaceProperty = @namespace, Name = name, Labels = new Dictionary<string, string> { ["kubernetes.io/service-name"] = service } },
        AddressType = "IPv4",
        Ports = [.. ports.Select(p => new Discoveryv1EndpointPort { Name = p.Name, Port = p.Port, Protocol = "TCP" })],
        Endpoints = [.. endpoints.Select(e => new V1Endpoint
        {
            Addresses = [e.Ip], Conditions = new V1EndpointConditions { Ready = e.Ready },
            TargetRef = new V1ObjectReference { Kind = "Pod", Name = e.Pod, NamespaceProperty = @namespace },
        })],
    };

    public static V1Node Node(string name, string internalIp) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Status = new V1NodeStatus { Addresses = [new V1NodeAddress { Type = "InternalIP", Address = internalIp }, new V1NodeAddress { Type = "Hostname", Address = name }] },
    };
}
