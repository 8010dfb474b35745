namespace NodeMesh.Authz;

/// <summary>The policy set in force. A reload swaps in a new compiled set atomically; readers keep the one they took.</summary>
internal sealed class PolicyStore
{
    private PolicySet _current = PolicySet.Empty;

    public PolicySet Current => Volatile.Read(ref _current);

    public void Replace(PolicySet policies) => Volatile.Write(ref _current, policies);
}
