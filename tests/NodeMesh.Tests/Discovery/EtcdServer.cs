using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NodeMesh.Tests.Discovery;

/// <summary>
/// Real etcd members (Debian's etcd-server) on loopback, each with its own data directory, started for one test
/// and stopped (killed, data removed) after it. <see cref="StartClusterAsync"/> starts several as one cluster.
/// </summary>
internal sealed class EtcdServer : IAsyncDisposable
{
    private readonly string _dir;
    private readonly List<Member> _members;

    private readonly string? _namespace;

    private EtcdServer(string dir, List<Member> members, string? @namespace)
    {
        _dir = dir;
        _members = members;
        _namespace = @namespace;
    }

    public IReadOnlyList<Uri> Endpoints => [.. _members.Select(m => m.ClientUrl)];

    public static Task<EtcdServer> StartAsync() => StartClusterAsync(1);

    /// <summary>
    /// <paramref name="size"/> members as one cluster: on loopback, or inside <paramref name="host"/>'s network
    /// namespace on its address (ports 23790, 23792, … there) so that agents in other namespaces reach them.
    /// </summary>
    public static async Task<EtcdServer> StartClusterAsync(int size, Netns.NetnsHost? host = null)
    {
        string dir = Path.Combine(Path.GetTempPath(), "nm-etcd-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        var members = Enumerable.Range(1, size).Select(i => host is null
            ? new Member($"m{i}", new Uri($"http://127.0.0.1:{FreePort()}"), new Uri($"http://127.0.0.1:{FreePort()}"))
            : new Member($"m{i}", new Uri($"http://{host.Ip}:{23788 + (2 * i)}"), new Uri($"http://{host.Ip}:{23789 + (2 * i)}"))).ToList();
        string cluster = string.Join(',', members.Select(m => $"{m.Name}={Bare(m.PeerUrl)}"));
        var server = new EtcdServer(dir, members, host?.Namespace);
        foreach (Member member in members)
        {
            server.Start(member, cluster);
        }

        foreach (Member member in members)
        {
            await server.WaitHealthyAsync(member);
        }

        return server;
    }

    /// <summary>etcdctl against the cluster: (exit code, stdout + stderr).</summary>
    public Task<(int ExitCode, string Output)> CtlAsync(params string[] args) => RunCtlAsync(string.Join(',', Endpoints.Select(Bare)), args);

    private Task<(int ExitCode, string Output)> CtlOneAsync(Member member, params string[] args) => RunCtlAsync(Bare(member.ClientUrl), ["--command-timeout=2s", .. args]);

    private async Task<(int ExitCode, string Output)> RunCtlAsync(string endpoints, string[] args)
    {
        ProcessStartInfo start = InNamespace("etcdctl");
        start.Environment["ETCDCTL_API"] = "3";
        start.ArgumentList.Add("--endpoints=" + endpoints);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>Starts member <paramref name="index"/> again on its data directory (after <see cref="Kill"/>) and waits until it is healthy.</summary>
    public async Task RestartAsync(int index)
    {
        Member member = _members[index];
        if (member.Process is { } old)
        {
            await old.WaitForExitAsync();
            old.Dispose();
        }

        Start(member, string.Join(',', _members.Select(m => $"{m.Name}={Bare(m.PeerUrl)}")));
        await WaitHealthyAsync(member);
    }

    /// <summary>SIGKILLs member <paramref name="index"/> (0-based).</summary>
    public void Kill(int index) => _members[index].Process?.Kill(entireProcessTree: true);

    public string Log(int index) => _members[index].Log.ToString();

    private void Start(Member member, string cluster)
    {
        ProcessStartInfo start = InNamespace("etcd");
        foreach (string arg in new[]
        {
            "--name", member.Name, "--data-dir", Path.Combine(_dir, member.Name),
            "--listen-client-urls", Bare(member.ClientUrl), "--advertise-client-urls", Bare(member.ClientUrl),
            "--listen-peer-urls", Bare(member.PeerUrl), "--initial-advertise-peer-urls", Bare(member.PeerUrl),
            "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", Path.GetFileName(_dir),
        })
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { lock (member.Log) { member.Log.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (member.Log) { member.Log.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        member.Process = process;
    }

    /// <summary>The program run directly, or through <c>ip netns exec</c> in the server's namespace.</summary>
    private ProcessStartInfo InNamespace(string program)
    {
        var start = new ProcessStartInfo(_namespace is null ? program : "ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (_namespace is not null)
        {
            foreach (string arg in new[] { "netns", "exec", _namespace, program })
            {
                start.ArgumentList.Add(arg);
            }
        }

        return start;
    }

    private async Task WaitHealthyAsync(Member member)
    {
        for (DateTime end = DateTime.UtcNow + TimeSpan.FromSeconds(20); DateTime.UtcNow < end; await Task.Delay(100))
        {
            if (member.Process is { HasExited: true } exited)
            {
                throw new InvalidOperationException($"etcd member {member.Name} exited ({exited.ExitCode}):\n{member.Log}");
            }

            // etcdctl in the member's namespace (the test process may have no route to it); not listening yet or no leader yet: unhealthy.
            (int code, string output) = await CtlOneAsync(member, "endpoint", "health");
            if (code == 0 && output.Contains("is healthy", StringComparison.Ordinal))
            {
                return;
            }
        }

        throw new InvalidOperationException($"etcd member {member.Name} is not healthy after 20 s:\n{member.Log}");
    }

    /// <summary>scheme://host:port, without the path etcd refuses in its URL flags.</summary>
    private static string Bare(Uri url) => url.GetLeftPart(UriPartial.Authority);

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (Member member in _members)
        {
            if (member.Process is { } process)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync();
                }
                catch (InvalidOperationException)
                {
                    // Already gone (killed by the test).
                }

                process.Dispose();
            }
        }

        Directory.Delete(_dir, recursive: true);
    }

    private sealed class Member(string name, Uri clientUrl, Uri peerUrl)
    {
        public string Name { get; } = name;

        public Uri ClientUrl { get; } = clientUrl;

        public Uri PeerUrl { get; } = peerUrl;

        public Process? Process { get; set; }

        public StringBuilder Log { get; } = new();
    }
}
