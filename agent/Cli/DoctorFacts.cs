using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;

namespace NodeMesh.Cli;

/// <summary>
/// Gathers what <c>nodemesh check</c> decides on: the process's privileges, the tools and kernel features the
/// capture needs, the configured workloads' namespaces, the files the certificate source reads, the agent's
/// ports, and whether peers and the CA accept connections. Changes nothing on the machine (a kernel feature is
/// tried in a namespace that exists only while one iptables command runs).
/// </summary>
internal static class DoctorFactsGatherer
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(10);

    private const int CapNetAdmin = 12;
    private const int CapSysAdmin = 21;

    /// <summary>The rules the capture installs, one kernel feature each (the ports are only placeholders).</summary>
    private static readonly (string Feature, string[] Rule)[] KernelProbes =
    [
        ("REDIRECT", ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "15001"]),
        ("TPROXY", ["-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j", "TPROXY", "--on-port", "15006", "--on-ip", "0.0.0.0", "--tproxy-mark", "0x1/0x1"]),
        ("mark", ["-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "-m", "mark", "!", "--mark", "0x2/0x2", "-j", "ACCEPT"]),
    ];

    private static readonly string[] Tools = ["iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "nsenter", "ip"];

    public static async Task<DoctorFacts> GatherAsync(AgentConfig config)
    {
        (bool root, ulong capabilities) = Privileges();
        bool netAdmin = root || (capabilities & (1UL << CapNetAdmin)) != 0;
        bool sysAdmin = root || (capabilities & (1UL << CapSysAdmin)) != 0;
        bool privileged = netAdmin && sysAdmin;
        List<string> missing = [.. Tools.Where(t => !OnPath(t))];

        Task<string?> runningAgent = RunningAgentAsync(config.ApiSocket);
        Task<ReachFact[]> reach = Task.WhenAll(ReachTargets(config).Select(t => ReachAsync(t.What, t.EndPoint, t.Required)));
        List<(string, string?)> kernel = [];
        if (privileged && OnPath("unshare") && OnPath("iptables"))
        {
            foreach ((string feature, string[] rule) in KernelProbes)
            {
                kernel.Add((feature, await RunAsync("unshare", ["--net", "--", "iptables", "-w", .. rule])));
            }
        }

        List<NamespaceFact> namespaces = [];
        foreach (WorkloadConfig w in config.Workloads)
        {
            namespaces.Add(await NamespaceAsync(w, privileged && OnPath("nsenter") && OnPath("ip")));
        }

        return new DoctorFacts
        {
            Root = root,
            NetAdmin = netAdmin,
            SysAdmin = sysAdmin,
            MissingTools = missing,
            Kernel = kernel,
            Namespaces = namespaces,
            Files = Files(config),
            Ports = Ports(config),
            RunningAgent = await runningAgent,
            ApiSocket = config.ApiSocket,
            Reach = await reach,
        };
    }

    /// <summary>Root (effective uid 0) and the effective capability set, from /proc/self/status.</summary>
    private static (bool Root, ulong Capabilities) Privileges()
    {
        bool root = false;
        ulong capabilities = 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            string[] fields = line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            if (fields is ["Uid:", _, string effective, ..])
            {
                root = effective == "0";
            }
            else if (fields is ["CapEff:", string hex])
            {
                capabilities = ulong.Parse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }
        }

        return (root, capabilities);
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin").Append("/sbin")
            .Any(dir => File.Exists(Path.Combine(dir, program)));

    private static async Task<NamespaceFact> NamespaceAsync(WorkloadConfig w, bool mayEnter)
    {
        if (!File.Exists(w.Netns))
        {
            return new NamespaceFact(w.Name, w.Ip, w.Netns, Exists: false, HoldsIp: null);
        }

        if (!mayEnter)
        {
            return new NamespaceFact(w.Name, w.Ip, w.Netns, Exists: true, HoldsIp: null, "entering it needs root or CAP_SYS_ADMIN");
        }

        (string? error, string stdout) = await RunWithOutputAsync("nsenter", ["--net=" + w.Netns, "--", "ip", "-o", "-4", "addr", "show"]);
        return error is not null
            ? new NamespaceFact(w.Name, w.Ip, w.Netns, Exists: true, HoldsIp: null, error)
            : new NamespaceFact(w.Name, w.Ip, w.Netns, Exists: true, HoldsIp: stdout.Contains($" {w.Ip}/", StringComparison.Ordinal));
    }

    private static List<FileFact> Files(AgentConfig config)
    {
        List<FileFact> files = [];
        switch (config.Certificates.Source)
        {
            case "ca":
                files.Add(new FileFact("ca.trustBundle", config.Ca.TrustBundle, Readable(() => TrustBundle.FromFile(config.Ca.TrustBundle))));
                // A node that has joined keeps its identity in the state directory; the token is needed only before that.
                bool joined = File.Exists(new NodeIdentityStore(config.StateDir).FilePath);
                files.Add(new FileFact("ca.joinTokenFile", config.Ca.JoinTokenFile, Readable(() => File.ReadAllText(config.Ca.JoinTokenFile)), NeededNow: !joined));
                break;
            case "files":
                files.Add(new FileFact("certificates.dir", config.Certificates.Dir, Readable(() => _ = Directory.EnumerateFiles(config.Certificates.Dir).Any())));
                break;
            default:
                files.Add(new FileFact("ca.dir", config.Ca.Dir, Readable(() => CertificateAuthority.Load(config.Ca.Dir).Dispose())));
                break;
        }

        if (config.Ca.Role == "server" && config.Certificates.Source != "embedded")
        {
            files.Add(new FileFact("ca.dir", config.Ca.Dir, Readable(() => CertificateAuthority.Load(config.Ca.Dir).Dispose())));
        }

        return files;
    }

    private static string? Readable(Action read)
    {
        try
        {
            read();
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            return ex.Message;
        }
    }

    private static List<PortFact> Ports(AgentConfig config)
    {
        List<PortFact> ports = [Bind("ports.tunnel", new IPEndPoint(IPAddress.Parse(config.Node.Address), config.Ports.Tunnel))];
        if (config.Ca.Role == "server" && IPEndPoint.TryParse(config.Ca.Listen, out IPEndPoint? listen))
        {
            ports.Add(Bind("ca.listen", listen));
        }

        return ports;
    }

    /// <summary>Binds the port for a moment (SO_REUSEADDR, as the agent does, so a socket in TIME_WAIT does not count).</summary>
    private static PortFact Bind(string setting, IPEndPoint endPoint)
    {
        using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            Interop.SocketOptions.SetReuseAddressOnly(socket);
            socket.Bind(endPoint);
            return new PortFact(setting, endPoint.ToString(), PortState.Free);
        }
        catch (SocketException ex)
        {
            return ex.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => new PortFact(setting, endPoint.ToString(), PortState.InUse),
                SocketError.AddressNotAvailable => new PortFact(setting, endPoint.ToString(), PortState.NotLocal),
                _ => new PortFact(setting, endPoint.ToString(), PortState.Denied, ex.Message),
            };
        }
    }

    private static async Task<string?> RunningAgentAsync(string socket)
    {
        if (!File.Exists(socket))
        {
            return null;
        }

        try
        {
            using var timeout = new CancellationTokenSource(ConnectTimeout);
            ApiResponse response = await Api.LocalApiClient.SendAsync(socket, new ApiRequest { Command = "status" }, timeout.Token);
            return response.Status?.Node;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static IEnumerable<(string What, IPEndPoint EndPoint, bool Required)> ReachTargets(AgentConfig config)
    {
        foreach (PeerNodeConfig peer in config.Nodes)
        {
            yield return ($"peer {peer.Name}'s tunnel port", new IPEndPoint(IPAddress.Parse(peer.Address), config.Ports.Tunnel), false);
        }

        if (config.Certificates.Source == "ca" && IPEndPoint.TryParse(config.Ca.Server, out IPEndPoint? server))
        {
            yield return ("the CA server (ca.server)", server, true);
        }
    }

    private static async Task<ReachFact> ReachAsync(string what, IPEndPoint endPoint, bool required)
    {
        using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(ConnectTimeout);
        try
        {
            await socket.ConnectAsync(endPoint, timeout.Token);
            return new ReachFact(what, endPoint.ToString(), null, required);
        }
        catch (OperationCanceledException)
        {
            return new ReachFact(what, endPoint.ToString(), $"no answer within {Duration.Format(ConnectTimeout)}", required);
        }
        catch (SocketException ex)
        {
            return new ReachFact(what, endPoint.ToString(), ex.SocketErrorCode == SocketError.ConnectionRefused ? "connection refused (nothing listens there)" : ex.Message, required);
        }
    }

    /// <summary>Runs a command; null when it succeeded, else its first line of complaint.</summary>
    private static async Task<string?> RunAsync(string program, string[] args) => (await RunWithOutputAsync(program, args)).Error;

    private static async Task<(string? Error, string Stdout)> RunWithOutputAsync(string program, string[] args)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        try
        {
            using Process process = Process.Start(start) ?? throw new IOException($"cannot start {program}");
            process.StandardInput.Close();
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(CommandTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                return ($"{program} did not finish within {Duration.Format(CommandTimeout)}", "");
            }

            string error = (await stderr).Trim();
            return process.ExitCode == 0 ? (null, await stdout)
                : ($"{program} exited {process.ExitCode}{(error.Length == 0 ? "" : ": " + error.Split('\n')[0])}", await stdout);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return ($"cannot run {program}: {ex.Message}", "");
        }
    }
}
