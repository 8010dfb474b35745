using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Xunit.Abstractions;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// A test mesh on real network namespaces, built by tests/netns/topology.sh under a unique prefix: nodes on a
/// lan, pods behind each node, an external host; plus one embedded CA for the agents. Everything a test starts
/// through it (agents, servers, client sockets, captures) is stopped, and the namespaces destroyed, in
/// <see cref="DisposeAsync"/>, whether the test passed or failed. A test reads as its scenario:
/// <code>
/// await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
/// await mesh.StartAgentsAsync();
/// TcpTestServer echo = await mesh.Pod(2, 1).StartTcpServerAsync(7000, ServerMode.Echo);
/// LinkCapture link = await mesh.CaptureAsync(mesh.Node(1));
/// ProbeResult probe = await mesh.Pod(1, 1).ProbeAsync(echo.EndPoint, marker);
/// CapturedTraffic wire = await link.StopAsync();
/// Assert.False(wire.Contains(marker));
/// </code>
/// Set NODEMESH_TEST_KEEP=1 to keep the work directory (configs, state, pcaps) for inspection.
/// </summary>
internal sealed class Topology : IAsyncDisposable
{
    public const string TrustDomain = "cluster.local";

    private static readonly TimeSpan ScriptTimeout = TimeSpan.FromSeconds(60);

    private readonly List<Node> _nodes = [];
    private readonly Dictionary<Node, AgentProcess> _agents = [];
    private readonly List<AgentProcess> _allAgents = [];
    private readonly ConcurrentBag<IAsyncDisposable> _resources = [];
    private readonly ConcurrentBag<Socket> _sockets = [];
    private readonly ITestOutputHelper? _output;

    private Topology(string prefix, string workDir, ITestOutputHelper? output)
    {
        Prefix = prefix;
        WorkDir = workDir;
        _output = output;
        Ext = new ExternalHost(this);
    }

    /// <summary>The namespace prefix: "nt" and 5 random hex digits.</summary>
    public string Prefix { get; }

    /// <summary>Configs, state, CA and captures of this topology (removed at the end).</summary>
    public string WorkDir { get; }

    public string CaDir => Path.Combine(WorkDir, "ca");

    public IReadOnlyList<Node> Nodes => _nodes;

    public IEnumerable<Pod> Pods => _nodes.SelectMany(n => n.Pods);

    public ExternalHost Ext { get; }

    /// <summary>Node <paramref name="i"/> (1-based).</summary>
    public Node Node(int i) => _nodes[i - 1];

    /// <summary>Pod <paramref name="j"/> of node <paramref name="i"/> (both 1-based).</summary>
    public Pod Pod(int i, int j) => Node(i).Pod(j);

    /// <summary>The agent started for node <paramref name="i"/>.</summary>
    public AgentProcess Agent(int i) => _agents.TryGetValue(Node(i), out AgentProcess? agent)
        ? agent
        : throw new InvalidOperationException($"no agent was started for node{i}");

    public static async Task<Topology> CreateAsync(int nodes, int podsPerNode, ITestOutputHelper? output = null)
    {
        if (!Environment.IsPrivilegedProcess)
        {
            throw new InvalidOperationException(
                "the NodeMesh integration tests need root (network namespaces, iptables, IP_TRANSPARENT); run them as root, e.g. 'sudo ./build.sh test'");
        }

        string prefix = "nt" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))[..5];
        string workDir = Path.Combine(Path.GetTempPath(), "nodemesh-it", prefix);
        Directory.CreateDirectory(workDir);
        var topology = new Topology(prefix, workDir, output);
        try
        {
            await Command.RunCheckedAsync(ScriptTimeout, TestPaths.TopologyScript, "create", prefix,
                nodes.ToString(System.Globalization.CultureInfo.InvariantCulture), podsPerNode.ToString(System.Globalization.CultureInfo.InvariantCulture));
            for (int i = 1; i <= nodes; i++)
            {
                var node = new Node(topology, i);
                for (int j = 1; j <= podsPerNode; j++)
                {
                    node.AddPod(new Pod(topology, node, j));
                }

                topology._nodes.Add(node);
            }

            await Command.RunCheckedAsync(TimeSpan.FromSeconds(30), TestPaths.NodeMesh, "ca", "init", "--dir", topology.CaDir, "--trust-domain", TrustDomain);
            return topology;
        }
        catch
        {
            await topology.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Opt-in IPv6: ULA addresses (fd00::/8, only inside this topology's namespaces) and routes on every node,
    /// pod and ext, mirroring the IPv4 plan (tests/netns/topology.sh ipv6); afterwards each host's
    /// <see cref="NetnsHost.Ipv6"/> is set. Link-local addresses exist with or without this.
    /// </summary>
    public async Task AddIpv6Async()
    {
        int pods = _nodes[0].Pods.Count;
        await Command.RunCheckedAsync(ScriptTimeout, TestPaths.TopologyScript, "ipv6", Prefix,
            _nodes.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), pods.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (Node node in _nodes)
        {
            node.Ipv6 = IPAddress.Parse($"fd00:231::{node.Index}");
            foreach (Pod pod in node.Pods)
            {
                pod.Ipv6 = IPAddress.Parse($"fd00:240:{node.Index}::{pod.Index + 1}");
            }
        }

        Ext.Ipv6 = IPAddress.Parse("fd00:231::200");
    }

    /// <summary>Another CA (a foreign mesh with the same trust domain), in WorkDir/<paramref name="name"/>.</summary>
    public async Task<string> CreateCaAsync(string name)
    {
        string dir = Path.Combine(WorkDir, name);
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(30), TestPaths.NodeMesh, "ca", "init", "--dir", dir, "--trust-domain", TrustDomain);
        return dir;
    }

    /// <summary>Writes the config for <paramref name="node"/>'s agent, starts it and waits until it is ready.</summary>
    public async Task<AgentProcess> StartAgentAsync(Node node, Action<AgentSetup>? configure = null)
    {
        if (_agents.ContainsKey(node))
        {
            throw new InvalidOperationException($"an agent for {node.Name} already exists; use its RestartAsync");
        }

        AgentProcess agent = CreateAgent(node, configure);
        await agent.StartAsync();
        return agent;
    }

    /// <summary>
    /// Writes the config for an agent on <paramref name="node"/> without starting it. The first agent of a node is
    /// the one <see cref="Agent"/> returns; further ones (to test a second agent on a node) get their own files.
    /// </summary>
    public AgentProcess CreateAgent(Node node, Action<AgentSetup>? configure = null)
    {
        var setup = new AgentSetup();
        configure?.Invoke(setup);
        int sameNode = _allAgents.Count(a => a.Node == node);
        AgentProcess agent = AgentProcess.Create(this, node, setup, sameNode == 0 ? node.Name : $"{node.Name}-{sameNode + 1}");
        _allAgents.Add(agent);
        _agents.TryAdd(node, agent);
        return agent;
    }

    /// <summary>One agent per node, every pod a workload of its node.</summary>
    public async Task<IReadOnlyList<AgentProcess>> StartAgentsAsync()
    {
        var agents = new List<AgentProcess>();
        foreach (Node node in _nodes)
        {
            agents.Add(await StartAgentAsync(node));
        }

        return agents;
    }

    /// <summary>Starts capturing <paramref name="device"/> (default link0) in <paramref name="host"/>'s namespace.</summary>
    public async Task<LinkCapture> CaptureAsync(NetnsHost host, string device = "link0")
    {
        string file = Path.Combine(WorkDir, $"{host.Name}-{device}-{Guid.NewGuid():N}.pcap");
        LinkCapture capture = await LinkCapture.StartAsync(host, device, file);
        Track(capture);
        return capture;
    }

    /// <summary><paramref name="message"/>, then the state and recent output of every agent (for assertion messages).</summary>
    public string Explain(string message)
    {
        var sb = new StringBuilder(message);
        foreach (AgentProcess agent in _allAgents)
        {
            sb.Append('\n').Append(agent.Describe(60));
        }

        return sb.ToString();
    }

    internal void Track(IAsyncDisposable resource) => _resources.Add(resource);

    internal void Track(Socket socket) => _sockets.Add(socket);

    /// <summary>Never throws: a failure to clean up is written to the test output, and must not hide the test's own failure.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await CleanUpAsync();
        }
        catch (Exception ex)
        {
            _output?.WriteLine($"cleanup of topology {Prefix} failed: {ex}");
        }
    }

    private async Task CleanUpAsync()
    {
        var errors = new List<string>();
        foreach (Socket socket in _sockets)
        {
            socket.Dispose();
        }

        foreach (IAsyncDisposable resource in _resources)
        {
            try
            {
                await resource.DisposeAsync();
            }
            catch (Exception ex)
            {
                errors.Add($"{resource.GetType().Name}: {ex.Message}");
            }
        }

        foreach (AgentProcess agent in _allAgents)
        {
            try
            {
                await agent.DisposeAsync();
            }
            catch (Exception ex)
            {
                errors.Add($"{agent.Node.Name} agent: {ex.Message}");
            }

            _output?.WriteLine(agent.Describe(400));
        }

        foreach (NetnsHost host in _nodes.SelectMany(n => n.Pods.Cast<NetnsHost>().Prepend(n)).Append(Ext))
        {
            await host.StopThreadAsync();
        }

        CommandResult destroy = await Command.RunAsync(ScriptTimeout, TestPaths.TopologyScript, "destroy", Prefix);
        if (!destroy.Succeeded || destroy.Stderr.Length > 0)
        {
            errors.Add(destroy.ToString());
        }

        if (Environment.GetEnvironmentVariable("NODEMESH_TEST_KEEP") == "1")
        {
            _output?.WriteLine($"NODEMESH_TEST_KEEP=1: kept {WorkDir} (configs, state, captures)");
        }
        else
        {
            try
            {
                Directory.Delete(WorkDir, recursive: true);
            }
            catch (IOException ex)
            {
                errors.Add($"removing {WorkDir}: {ex.Message}");
            }
        }

        if (errors.Count > 0)
        {
            _output?.WriteLine($"cleanup of topology {Prefix}: " + string.Join("\n", errors));
        }
    }
}
