using System.Net;

namespace NodeMesh.State;

/// <summary>A service: flows to one of its addresses and ports are balanced over its endpoints (workload names).</summary>
internal sealed record MeshService(string Name, IReadOnlyList<IPAddress> Addresses, IReadOnlyList<ServicePort> Ports, IReadOnlyList<string> Endpoints);

/// <param name="TargetPort">The endpoints' port.</param>
internal readonly record struct ServicePort(int Port, int TargetPort);
