using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Api;
using NodeMesh.Authz;
using NodeMesh.Capture;
using NodeMesh.Config;
using NodeMesh.Contracts;
using NodeMesh.Identity;
using NodeMesh.Proxy;
using NodeMesh.Proxy.Inbound;
using NodeMesh.Proxy.Outbound;
using NodeMesh.State;
using NodeMesh.Telemetry;
using NodeMesh.Tunnel;

namespace NodeMesh.App;

/// <summary>The <c>nodemesh</c> command line: the agent itself and the commands that talk to it.</summary>
internal static class CommandLine
{
    private const string DefaultSocket = "/run/nodemesh/agent.sock";

    private const string Usage = """
        nodemesh — the NodeMesh node agent

        Usage:
          nodemesh run --config FILE             run the agent (foreground; SIGTERM stops it, draining flows)
          nodemesh check --config FILE           validate a configuration file and exit
          nodemesh ca init --dir DIR [--trust-domain TD] [--days N] [--intermediate-days N]
                                                 create the mesh CA (ca.crt, ca.key and join.key, mode 0600)
          nodemesh ca token create --dir DIR --node NAME [--ttl 1h]
                                                 print a join token for node NAME (valid for --ttl)
          nodemesh workload add --name N --ip IP --identity SPIFFE-ID --netns PATH
                                [--mode STRICT|PERMISSIVE] [--label KEY=VALUE ...] [--socket S]
          nodemesh workload remove --name N [--socket S]
          nodemesh workload list [--socket S] [--json]
          nodemesh flows [--socket S] [--json]   recent flows this agent carried
          nodemesh status [--socket S] [--json]
          nodemesh version
          nodemesh --help

        --socket defaults to /run/nodemesh/agent.sock (the apiSocket of the configuration).
        The configuration file format is described in README.md.

        Exit codes: 0 success; 1 a runtime failure (agent unreachable, request refused, CA refused);
        2 bad usage or an invalid configuration; 3 not permitted (needs root, or CAP_NET_ADMIN and
        CAP_SYS_ADMIN, or a file or directory this user cannot read or write).
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        try
        {
            return args switch
            {
                [] or ["--help"] or ["-h"] or ["help"] => Help(),
                ["version"] or ["--version"] => Version(),
                ["run", .. var rest] => await RunAgentAsync(Options.Parse(rest, ["config"], [])),
                ["check", .. var rest] => Check(Options.Parse(rest, ["config"], [])),
                ["ca", "init", .. var rest] => CaInit(Options.Parse(rest, ["dir", "trust-domain", "days", "intermediate-days"], [])),
                ["ca", "token", "create", .. var rest] => TokenCreate(Options.Parse(rest, ["dir", "node", "ttl"], [])),
                ["workload", "add", .. var rest] => await WorkloadAddAsync(Options.Parse(rest, ["name", "ip", "identity", "netns", "socket", "mode", "label"], [])),
                ["workload", "remove", .. var rest] => await WorkloadRemoveAsync(Options.Parse(rest, ["name", "socket"], [])),
                ["workload", "list", .. var rest] => await WorkloadListAsync(Options.Parse(rest, ["socket"], ["json"])),
                ["flows", .. var rest] => await FlowsAsync(Options.Parse(rest, ["socket"], ["json"])),
                ["status", .. var rest] => await StatusAsync(Options.Parse(rest, ["socket"], ["json"])),
                _ => throw new UsageException($"unknown command '{Printable.Of(string.Join(' ', args))}'"),
            };
        }
        catch (UsageException ex)
        {
            return await FailAsync($"{ex.Message}\nRun 'nodemesh --help' for usage.", ExitCode.Usage);
        }
        catch (CommandException ex)
        {
            return await FailAsync(ex.Message, ex.Code);
        }
        catch (StartupException ex)
        {
            return IsNotPermitted(ex.InnerException)
                ? await FailAsync(ex.Message.Contains("CAP_", StringComparison.Ordinal) ? ex.Message : $"{ex.Message} ({NotPermittedHint})", ExitCode.NotPermitted)
                : await FailAsync(ex.Message, ExitCode.Failure);
        }
        catch (ConfigException ex)
        {
            return await FailAsync(ex.Message, ExitCode.Usage);
        }
        catch (Exception ex) when (IsNotPermitted(ex))
        {
            return await FailAsync($"{ex.Message} ({NotPermittedHint})", ExitCode.NotPermitted);
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException)
        {
            return await FailAsync(ex.Message, ExitCode.Failure);
        }
        catch (Exception ex)
        {
            // A backstop: every case known to fail is handled where it happens, with its context. What reaches
            // here is a bug, still reported in one line (the operator's terminal is no place for a stack trace).
            return await FailAsync($"unexpected failure ({ex.GetType().Name}): {ex.Message}", ExitCode.Failure);
        }
    }

    /// <summary>What a permission failure needs, said once for every command.</summary>
    private const string NotPermittedHint = "run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN, and check the owner and mode of the files and directories named";

    private static async Task<int> FailAsync(string message, ExitCode code)
    {
        await Console.Error.WriteLineAsync($"nodemesh: {message}");
        return (int)code;
    }

    /// <summary>What failed and why, with the exit code that calls for (3 when it was a permission).</summary>
    private static CommandException Failed(string what, Exception ex) =>
        IsNotPermitted(ex)
            ? new CommandException($"{what}: {ex.Message} ({NotPermittedHint})", ExitCode.NotPermitted)
            : new CommandException($"{what}: {ex.Message}", ExitCode.Failure);

    /// <summary>A permission failure: a file the user may not open, or a call only root (or a capability) may make.</summary>
    private static bool IsNotPermitted(Exception? ex) =>
        ex is UnauthorizedAccessException or Interop.InteropException { Errno: 1 or 13 }
        || (ex is System.Net.Sockets.SocketException se && se.SocketErrorCode == System.Net.Sockets.SocketError.AccessDenied);

    private static int Help()
    {
        Console.WriteLine(Usage);
        return 0;
    }

    private static int Version()
    {
        Console.WriteLine($"nodemesh {AgentVersion.Current}");
        return 0;
    }

    private static int Check(Options options)
    {
        AgentConfig config = ConfigLoader.Load(options.Required("config"));
        Console.WriteLine($"configuration is valid: node {config.Node.Name}, {config.Workloads.Count} local and {config.RemoteWorkloads.Count} remote workloads, {config.Nodes.Count} peer nodes");
        return 0;
    }

    /// <summary>The longest CA lifetime accepted on the command line (a root has to be replaced some day).</summary>
    private const int MaxCaDays = 36500;

    private static int CaInit(Options options)
    {
        string dir = options.Required("dir");
        string trustDomain = options.Get("trust-domain") ?? "cluster.local";
        int days = Days(options, "days") ?? 3650;
        int? intermediateDays = Days(options, "intermediate-days");
        if (!SpiffeId.IsTrustDomain(trustDomain))
        {
            throw new UsageException($"--trust-domain: '{Printable.Of(trustDomain)}' is not a trust domain (lower-case letters, digits, '-', '.', '_')");
        }

        if (CertificateAuthority.Exists(dir) || File.Exists(Path.Combine(dir, CertificateAuthority.CertFile)))
        {
            throw new CommandException($"a CA already exists in {dir}; remove it first to create a new one", ExitCode.Failure);
        }

        try
        {
            using var ca = CertificateAuthority.Create(dir, trustDomain, TimeSpan.FromDays(days), intermediateDays is int d ? TimeSpan.FromDays(d) : null);
            _ = JoinTokens.Open(dir);
            Console.WriteLine($"created CA for trust domain {trustDomain} in {dir} (valid until {ca.Root.NotAfter:yyyy-MM-dd}" +
                $"{(intermediateDays is null ? "" : ", with an intermediate")}); join tokens: nodemesh ca token create --dir {dir} --node NAME");
            return 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Failed($"cannot create the CA in {dir}", ex);
        }
    }

    /// <summary>A positive number of days, at most <see cref="MaxCaDays"/>.</summary>
    private static int? Days(Options options, string name) =>
        options.GetInt(name) is not int days ? null
        : days is > 0 and <= MaxCaDays ? days
        : throw new UsageException($"--{name}: {days} is not between 1 and {MaxCaDays} days");

    private static int TokenCreate(Options options)
    {
        string dir = options.Required("dir");
        string node = options.Required("node");
        if (!JoinTokens.TryParseTtl(options.Get("ttl") ?? "1h", out TimeSpan ttl, out string? error))
        {
            throw new UsageException($"--ttl: {error}");
        }

        if (!MeshIdentities.IsNodeName(node))
        {
            throw new UsageException($"--node: '{Printable.Of(node)}' is not a node name (a-z, 0-9, '-', '.')");
        }

        if (!CertificateAuthority.Exists(dir))
        {
            throw new UsageException($"no CA in {dir}; create one with 'nodemesh ca init --dir {dir}'");
        }

        JoinTokens tokens;
        try
        {
            tokens = JoinTokens.Open(dir);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw Failed($"cannot read the join-token secret in {dir}", ex);
        }

        Console.WriteLine(tokens.Create(node, ttl));
        return 0;
    }

    private static async Task<int> RunAgentAsync(Options options)
    {
        string path = options.Required("config");
        AgentConfig config = ConfigLoader.Load(path);
        if ((config.Certificates.Source == "embedded" || config.Ca.Role == "server") && !CertificateAuthority.Exists(config.Ca.Dir))
        {
            throw new ConfigException(path, [$"ca.dir: no CA in {config.Ca.Dir}; create one with 'nodemesh ca init --dir {config.Ca.Dir} --trust-domain {config.TrustDomain}'"]);
        }

        if (System.Text.Encoding.UTF8.GetByteCount(config.ApiSocket) > MaxSocketPathBytes)
        {
            throw new ConfigException(path, [$"apiSocket: {config.ApiSocket} is longer than {MaxSocketPathBytes} bytes, the most a Unix socket path may have"]);
        }

        PrepareDirectory(config.StateDir, "stateDir");
        PrepareDirectory(Path.GetDirectoryName(Path.GetFullPath(config.ApiSocket))!, "apiSocket");

        // Then, before anything else: a second agent with this state directory stops here, before it touches anything.
        using StateDirectory stateDirectory = StateDirectory.Lock(config.StateDir, config.Node.Name);
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.SetMinimumLevel(Enum.TryParse(Environment.GetEnvironmentVariable("NODEMESH_LOG_LEVEL"), ignoreCase: true, out LogLevel level) ? level : LogLevel.Information);
        // A failed start is reported once, by us, without the host's stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        builder.Services.AddSystemd();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(config.DrainSeconds + 10));

        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(config.Tunnel);
        builder.Services.AddSingleton(sp => IdentitySetup.CreateCertificates(config, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddSingleton<ICertificateProvider>(sp => sp.GetRequiredService<IdentitySetup.Certificates>().Provider);
        // One verifier for the whole agent: it remembers intermediates of verified chains (TLS resumption sends only the leaf).
        builder.Services.AddSingleton(sp =>
        {
            ICertificateProvider provider = sp.GetRequiredService<ICertificateProvider>();
            return new PeerCertificateVerifier(config.TrustDomain, () => provider.TrustBundle);
        });
        builder.Services.AddSingleton(sp => new TunnelOptions
        {
            KeepaliveInterval = TimeSpan.FromSeconds(config.Tunnel.KeepaliveIntervalSeconds),
            KeepaliveTimeout = TimeSpan.FromSeconds(config.Tunnel.KeepaliveTimeoutSeconds),
            LocalAddress = System.Net.IPAddress.Parse(config.Node.Address),
            Logger = sp.GetRequiredService<ILogger<TunnelConnection>>(),
            Metrics = sp.GetRequiredService<MeshMetrics>(),
        });
        builder.Services.AddSingleton(sp => new TunnelPool(
            sp.GetRequiredService<ICertificateProvider>(), sp.GetRequiredService<PeerCertificateVerifier>(),
            node => MeshIdentities.Node(config.TrustDomain, node), config.Tunnel, sp.GetRequiredService<TunnelOptions>(),
            sp.GetRequiredService<ILogger<TunnelPool>>()));
        builder.Services.AddSingleton<WorkloadRegistry>();
        builder.Services.AddSingleton(new FlowLog());
        builder.Services.AddSingleton<MeshMetrics>();
        builder.Services.AddSingleton<FlowRecorder>();
        builder.Services.AddSingleton<AuthzMetrics>();
        builder.Services.AddSingleton<Authorizer>();
        builder.Services.AddSingleton<ConnectionManager>();
        builder.Services.AddSingleton<OutboundProxy>();
        builder.Services.AddSingleton<InboundTunnelProxy>();
        builder.Services.AddSingleton<InboundPlaintextProxy>();
        builder.Services.AddSingleton<TunnelListenerFactory>();
        builder.Services.AddSingleton(new WorkloadStateStore(config.StateDir));
        builder.Services.AddSingleton(stateDirectory);
        builder.Services.AddHostedService(sp => new CaService(
            config, sp.GetRequiredService<IdentitySetup.Certificates>(), sp.GetRequiredService<WorkloadRegistry>(), sp.GetRequiredService<ILoggerFactory>(),
            sp.GetRequiredService<MeshMetrics>()));
        builder.Services.AddHostedService<MeshAgent>();
        builder.Services.AddHostedService<MemoryReclaimer>();
        builder.Services.AddHostedService(sp => new TrustBundleWatcher(
            sp.GetRequiredService<IdentitySetup.Certificates>().Authority, config.Ca.Dir, sp.GetRequiredService<ILogger<TrustBundleWatcher>>()));
        builder.Services.AddHostedService(sp => new ConfigReloader(
            path, config, sp.GetRequiredService<WorkloadRegistry>(), sp.GetRequiredService<ConnectionManager>(),
            sp.GetRequiredService<AuthzMetrics>(), sp.GetRequiredService<ILogger<ConfigReloader>>()));

        using IHost host = builder.Build();
        await host.RunAsync();
        return 0;
    }

    /// <summary>
    /// Creates <paramref name="dir"/> if needed and proves it writable, before anything starts: a directory the
    /// agent cannot write is named with its setting, not found out later in the middle of a start.
    /// </summary>
    private static void PrepareDirectory(string dir, string setting)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".nodemesh-write-test-{Environment.ProcessId}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new StartupException($"{setting}: cannot write to {dir}: {ex.Message}", ex);
        }
    }

    private static async Task<int> WorkloadAddAsync(Options options)
    {
        var request = new ApiRequest
        {
            Command = "workload-add",
            Workload = new WorkloadInfo
            {
                Name = options.Required("name"),
                Ip = options.Required("ip"),
                Identity = options.Required("identity"),
                Netns = options.Required("netns"),
                Mode = options.Get("mode"),
                Labels = ParseLabels(options.GetAll("label")),
            },
        };
        await SendAsync(options, request);
        Console.WriteLine($"workload {request.Workload.Name} added");
        return 0;
    }

    private static Dictionary<string, string>? ParseLabels(IReadOnlyList<string> values)
    {
        if (values.Count == 0)
        {
            return null;
        }

        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string value in values)
        {
            int eq = value.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new UsageException($"--label '{Printable.Of(value)}' must be KEY=VALUE");
            }

            labels[value[..eq]] = value[(eq + 1)..];
        }

        return labels;
    }

    private static async Task<int> WorkloadRemoveAsync(Options options)
    {
        string name = options.Required("name");
        await SendAsync(options, new ApiRequest { Command = "workload-remove", Name = name });
        Console.WriteLine($"workload {name} removed");
        return 0;
    }

    private static async Task<int> WorkloadListAsync(Options options)
    {
        ApiResponse response = await SendAsync(options, new ApiRequest { Command = "workload-list" });
        IReadOnlyList<WorkloadInfo> workloads = response.Workloads ?? [];
        if (options.Flag("json"))
        {
            Console.WriteLine(JsonSerializer.Serialize(workloads.ToList(), ApiJsonContext.Default.ListWorkloadInfo));
            return 0;
        }

        Console.WriteLine($"{"NAME",-16} {"IP",-15} {"SOURCE",-7} {"IDENTITY",-50} {"NETNS",-30} CERTIFICATE");
        foreach (WorkloadInfo w in workloads)
        {
            Console.WriteLine($"{w.Name,-16} {w.Ip,-15} {w.Source,-7} {w.Identity,-50} {w.Netns,-30} {w.Certificate}");
        }

        return 0;
    }

    private static async Task<int> FlowsAsync(Options options)
    {
        ApiResponse response = await SendAsync(options, new ApiRequest { Command = "flows" });
        IReadOnlyList<FlowRecord> flows = response.Flows ?? [];
        if (options.Flag("json"))
        {
            foreach (FlowRecord flow in flows)
            {
                Console.WriteLine(JsonSerializer.Serialize(flow, ApiJsonContext.Default.FlowRecord));
            }

            return 0;
        }

        Console.WriteLine($"{"DIR",-8} {"PATH",-11} {"SOURCE",-21} {"DESTINATION",-21} {"ENC",-3} {"SENT",12} {"RECEIVED",12}  RESULT");
        foreach (FlowRecord f in flows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{f.Direction,-8} {f.Path,-11} {f.Source,-21} {f.Destination,-21} {(f.Encrypted ? "yes" : "no"),-3} {f.BytesSent,12} {f.BytesReceived,12}  {f.Result}"));
        }

        return 0;
    }

    private static async Task<int> StatusAsync(Options options)
    {
        ApiResponse response = await SendAsync(options, new ApiRequest { Command = "status" });
        AgentStatus status = response.Status ?? throw new IOException("the agent's status reply has no status");
        if (options.Flag("json"))
        {
            Console.WriteLine(JsonSerializer.Serialize(status, ApiJsonContext.Default.AgentStatus));
            return 0;
        }

        Console.WriteLine($"node {status.Node}, nodemesh {status.Version}; transports: {string.Join(", ", status.Transports)}; " +
            $"tunnel connections: {status.TunnelConnections} open, {status.TunnelConnectionsOpened} dialled; flows: {status.ActiveFlows} active, {status.FlowsRefused} refused; " +
            $"policies: {status.Policies}, denied: {status.FlowsDenied}, dry-run denied: {status.FlowsDryRunDenied}; " +
            $"memory: {status.ResidentBytes / 1048576.0:F1} MiB resident, managed heap {status.ManagedHeapBytes / 1048576.0:F1} MiB ({status.ManagedCommittedBytes / 1048576.0:F1} MiB committed)");
        foreach (CertificateInfo certificate in status.Certificates)
        {
            Console.WriteLine(certificate.NotAfter is { } notAfter && notAfter > DateTimeOffset.UtcNow
                ? $"certificate {certificate.Identity}: valid until {notAfter:u}"
                : $"certificate {certificate.Identity}: unavailable{(certificate.Error is null ? "" : ": " + certificate.Error)}");
        }
        return 0;
    }

    /// <summary>sockaddr_un holds 108 bytes, with the terminating NUL.</summary>
    private const int MaxSocketPathBytes = 107;

    private static async Task<ApiResponse> SendAsync(Options options, ApiRequest request)
    {
        string socket = options.Get("socket") ?? DefaultSocket;
        if (socket.Length == 0 || System.Text.Encoding.UTF8.GetByteCount(socket) > MaxSocketPathBytes)
        {
            throw new UsageException($"--socket: a Unix socket path has 1 to {MaxSocketPathBytes} bytes; '{Printable.Of(socket)}' has {System.Text.Encoding.UTF8.GetByteCount(socket)}");
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        ApiResponse response = await LocalApiClient.SendAsync(socket, request, timeout.Token);
        if (!response.Ok)
        {
            throw new IOException($"the agent refused: {response.Error}");
        }

        return response;
    }
}
