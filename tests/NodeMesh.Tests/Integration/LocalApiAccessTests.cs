using NodeMesh.Contracts;
using NodeMesh.Tests.Netns;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Integration;

/// <summary>
/// The local API is for root and the members of <c>api.group</c>: the socket is created with that mode, and each
/// caller is checked again by its kernel credentials (SO_PEERCRED), so even a socket whose mode was loosened
/// refuses anyone else, with a clear reply, and counts it.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class LocalApiAccessTests(ITestOutputHelper output)
{
    private const string Nobody = "65534";

    [Fact]
    public async Task NonRootCaller_IsRefused_EvenThroughALoosenedSocket_AndRootIsServed()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(agent.SocketPath));

        CommandResult byMode = await AsUserAsync(agent, ["--clear-groups"], "workload", "list");
        Assert.True(!byMode.Succeeded && byMode.Stderr.Contains("ermission denied", StringComparison.Ordinal) && !byMode.Stderr.Contains("   at ", StringComparison.Ordinal),
            agent.Explain($"uid {Nobody} must be refused by the socket's mode: {byMode}"));

        // An operator loosens the mode by mistake: the caller's credentials still decide.
        File.SetUnixFileMode(agent.SocketPath, (UnixFileMode)0x1b6);
        CommandResult byCredentials = await AsUserAsync(agent, ["--clear-groups"], "workload", "list");
        Assert.True(!byCredentials.Succeeded && byCredentials.Stderr.Contains("permission denied: the agent's local API is for root only", StringComparison.Ordinal)
            && byCredentials.Stderr.Contains($"uid {Nobody}", StringComparison.Ordinal),
            agent.Explain($"uid {Nobody} must be refused by SO_PEERCRED with a clear reply: {byCredentials}"));

        AgentStatus status = await agent.StatusAsync();
        Assert.Equal(1, status.ApiCallersRefused);
        Assert.Equal(mesh.Pod(1, 1).Name, Assert.Single(await agent.WorkloadListAsync()).Name);
    }

    [Fact]
    public async Task MemberOfTheApiGroup_IsServed_AndOthersAreNot()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c => c.Api = new Config.ApiConfig { Group = "users" });
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite, File.GetUnixFileMode(agent.SocketPath));
        CommandResult owner = await Command.RunAsync("stat", "-c", "%g", agent.SocketPath);
        Assert.Equal("100", owner.Stdout.Trim());

        CommandResult member = await AsUserAsync(agent, ["--groups=100"], "workload", "list", "--json");
        Assert.True(member.Succeeded && member.Stdout.Contains(mesh.Pod(1, 1).Name, StringComparison.Ordinal),
            agent.Explain($"a member of group users must be served: {member}"));

        CommandResult stranger = await AsUserAsync(agent, ["--clear-groups"], "workload", "list");
        Assert.True(!stranger.Succeeded && stranger.Stderr.Contains("ermission denied", StringComparison.Ordinal),
            agent.Explain($"uid {Nobody} outside group users must be refused: {stranger}"));
    }

    private static Task<CommandResult> AsUserAsync(AgentProcess agent, string[] groups, params string[] args) =>
        Command.RunAsync(TimeSpan.FromSeconds(20), "setpriv", ["--reuid=" + Nobody, "--regid=" + Nobody, .. groups, "--", TestPaths.NodeMesh, .. args, "--socket", agent.SocketPath]);
}
