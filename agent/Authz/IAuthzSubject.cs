using System.Net;
using NodeMesh.Identity;

namespace NodeMesh.Authz;

/// <summary>
/// What policies judge a destination workload by. Defined here, below the registry, so the registry's
/// snapshot can carry the policies in force together with the workloads they are judged against.
/// </summary>
internal interface IAuthzSubject
{
    string Name { get; }

    IPAddress Ip { get; }

    SpiffeId Identity { get; }

    IReadOnlyDictionary<string, string> Labels { get; }

    /// <summary>False for a STRICT workload: plaintext from outside the mesh is refused whatever the policies say.</summary>
    bool AcceptsPlaintext { get; }
}
