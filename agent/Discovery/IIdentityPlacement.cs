using NodeMesh.Identity;

namespace NodeMesh.Discovery;

/// <summary>
/// Where a source knows more about which node runs an identity than the registry's workloads tell: the kubernetes
/// source knows pods that are scheduled but have no address yet (a pod gets its certificate while its network is
/// set up). The CA issues an identity to a node that the registry or this placement puts it on.
/// </summary>
internal interface IIdentityPlacement
{
    bool Places(string node, SpiffeId identity);
}
