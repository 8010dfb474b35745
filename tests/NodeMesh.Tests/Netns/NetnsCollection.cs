namespace NodeMesh.Tests.Netns;

/// <summary>
/// Every test that builds namespaces, runs agents or binds ports runs in this one collection, one test at a
/// time: the machine has two cores, and timing-sensitive checks (a kill mid-transfer) must not compete.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NetnsCollection
{
    public const string Name = "netns";
}
