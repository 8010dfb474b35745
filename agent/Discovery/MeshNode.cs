using System.Net;

namespace NodeMesh.Discovery;

/// <summary>A node of the mesh as the registry knows it: where its agent's tunnel listens and which transports it serves.</summary>
internal sealed record MeshNode(string Name, IPEndPoint Tunnel, IReadOnlyList<string> Transports);
