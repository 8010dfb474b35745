using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Configuration;
using NodeMesh.Admin;
using NodeMesh.Authz;
using NodeMesh.Cli;
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
using OpenTelemetry.Metrics;

namespace NodeMesh.App;

/// <summary>The <c>nodemesh</c> command line: the agent itself and the commands that talk to it.</summary>
internal static class CommandLine
{
    public static async Task<int> RunAsync(string[] args)
    {
        // The command being run, for the hint after a usage error.
        string? current = null;
        try
        {
            switch (args)
            {
                case [] or ["--help"] or ["-h"] or ["help"]:
                    return Help();
                case ["--version"]:
                    return Version();
                case ["help", .. var topic]:
                    return HelpOn(topic);
            }

            (CommandSpec? command, int words) = CommandTable.Find(args);
            if (command is null)
            {
                return GroupOrUnknown(args);
            }

            current = command.Path;
            Options options = Options.Parse(args[words..], command);
            if (options.HelpRequested)
            {
                Console.Write(HelpText.For(command));
                return 0;
            }

            return command.Path switch
            {
                "run" => await RunAgentAsync(options),
                "check" => CheckCommand.Validate(options),
                "doctor" => await CheckCommand.DoctorAsync(options),
                "ca init" => CaInit(options),
                "ca token create" => TokenCreate(options),
                "workload add" => await WorkloadCommands.AddAsync(options),
                "workload remove" => await WorkloadCommands.RemoveAsync(options),
                "workload list" => await WorkloadCommands.ListAsync(options),
                var consumer when consumer.StartsWith("consumer ", StringComparison.Ordinal) => await ConsumerCommands.RunAsync(consumer, options),
                "flows" => await FlowsCommand.RunAsync(options),
                "status" => await StatusCommand.RunAsync(options),
                "version" => Version(),
                "completion" => Completion(options),
                _ => throw new UsageException($"'{command.Path}' has no implementation"),
            };
        }
        catch (UsageException ex)
        {
            return await FailAsync(ex.Message.Contains("--help'", StringComparison.Ordinal) ? ex.Message
                : $"{ex.Message}\nRun 'nodemesh {(current is null ? "" : current + " ")}--help' for usage.", ExitCode.Usage);
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
        Console.Write(HelpText.Overview());
        return 0;
    }

    /// <summary><c>nodemesh help COMMAND</c>: the command's help, or a group's list of commands.</summary>
    private static int HelpOn(string[] topic)
    {
        if (topic is ["-h"] or ["--help"])
        {
            topic = ["help"];
        }

        (CommandSpec? command, int words) = CommandTable.Find(topic);
        if (command is not null && words == topic.Length)
        {
            Console.Write(HelpText.For(command));
            return 0;
        }

        IReadOnlyList<CommandSpec> group = CommandTable.Under(string.Join(' ', topic));
        if (group.Count > 0)
        {
            Console.Write(HelpText.ForGroup(string.Join(' ', topic), group));
            return 0;
        }

        throw new UsageException($"no command '{Printable.Of(string.Join(' ', topic))}'; the commands are: {string.Join(", ", CommandTable.All.Select(c => c.Path))}");
    }

    /// <summary>"nodemesh workload" (a group: its commands), "nodemesh workload --help", or a command that does not exist.</summary>
    private static int GroupOrUnknown(string[] args)
    {
        // The longest leading words that name a group ("ca token" in "ca token frob").
        for (int words = args.Length; words > 0; words--)
        {
            string group = string.Join(' ', args[..words]);
            IReadOnlyList<CommandSpec> commands = CommandTable.Under(group);
            if (commands.Count == 0)
            {
                continue;
            }

            string[] rest = args[words..];
            if (rest is ["-h"] or ["--help"])
            {
                Console.Write(HelpText.ForGroup(group, commands));
                return 0;
            }

            string choices = string.Join(", ", commands.Select(c => c.Path[(group.Length + 1)..]));
            throw new UsageException(rest.Length == 0
                ? $"'nodemesh {group}' needs a command: {choices}\nRun 'nodemesh {group} --help' for usage."
                : $"unknown command '{Printable.Of(string.Join(' ', args))}': 'nodemesh {group}' has {choices}\nRun 'nodemesh {group} --help' for usage.");
        }

        throw new UsageException($"unknown command '{Printable.Of(string.Join(' ', args))}'");
    }

    private static int Completion(Options options)
    {
        Console.Write(options.Arguments is [string shell] ? CompletionScripts.For(shell) : throw new UsageException("give the shell: nodemesh completion bash|zsh|fish"));
        return 0;
    }

    private static int Version()
    {
        Console.WriteLine($"nodemesh {AgentVersion.Current}");
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
        TelemetryPlan telemetry = TelemetrySetup.Plan(config, Environment.GetEnvironmentVariable);
        // The OpenTelemetry SDK reads the standard OTEL_* variables through the host's configuration.
        builder.Configuration.AddEnvironmentVariables();
        var logLevel = new LogLevelSwitch(config.Logging.Level
            ?? (Enum.TryParse(Environment.GetEnvironmentVariable("NODEMESH_LOG_LEVEL"), ignoreCase: true, out LogLevel level) ? level : LogLevel.Information));
        TelemetrySetup.AddMeshLogging(builder.Logging, config, telemetry, logLevel);
        builder.Services.AddSystemd();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = config.DrainTimeout + TimeSpan.FromSeconds(10));

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
            KeepaliveInterval = config.Tunnel.KeepaliveInterval,
            KeepaliveTimeout = config.Tunnel.KeepaliveTimeout,
            LocalAddress = System.Net.IPAddress.Parse(config.Node.Address),
            Logger = sp.GetRequiredService<ILogger<TunnelConnection>>(),
            Metrics = sp.GetRequiredService<MeshMetrics>(),
        });
        builder.Services.AddSingleton(sp => new TunnelPool(
            sp.GetRequiredService<ICertificateProvider>(), sp.GetRequiredService<PeerCertificateVerifier>(),
            node => MeshIdentities.Node(config.TrustDomain, node), config.Tunnel, sp.GetRequiredService<TunnelOptions>(),
            sp.GetRequiredService<ILogger<TunnelPool>>()));
        builder.Services.AddSingleton<WorkloadRegistry>();
        if (config.Discovery.Source == DiscoverySource.Kubernetes)
        {
            // One source is the registry's, the pod directory and the CA's placement: what the API server says.
            builder.Services.AddSingleton(sp =>
            {
                try
                {
                    return new Discovery.Kubernetes.KubernetesRegistrySource(config, sp.GetRequiredService<WorkloadRegistry>(), sp.GetRequiredService<MeshMetrics>(),
                        sp.GetRequiredService<ILogger<Discovery.Kubernetes.KubernetesRegistrySource>>());
                }
                catch (Discovery.Kubernetes.KubernetesSetupException ex)
                {
                    throw new StartupException(ex.Message, ex);
                }
            });
            builder.Services.AddSingleton<Discovery.IRegistrySource>(sp => sp.GetRequiredService<Discovery.Kubernetes.KubernetesRegistrySource>());
            builder.Services.AddSingleton<Discovery.IPodDirectory>(sp => sp.GetRequiredService<Discovery.Kubernetes.KubernetesRegistrySource>());
            builder.Services.AddSingleton<Discovery.IIdentityPlacement>(sp => sp.GetRequiredService<Discovery.Kubernetes.KubernetesRegistrySource>());
        }
        else
        {
            builder.Services.AddSingleton<Discovery.IRegistrySource>(sp => config.Discovery.Source == DiscoverySource.Etcd
                ? new Discovery.EtcdRegistrySource(config, sp.GetRequiredService<WorkloadRegistry>(), sp.GetRequiredService<MeshMetrics>(),
                    sp.GetRequiredService<ILogger<Discovery.EtcdRegistrySource>>())
                : new Discovery.StaticRegistrySource(config, sp.GetRequiredService<WorkloadRegistry>()));
            // Pods' service accounts and placement come from the kubernetes source; the others know no pods.
            builder.Services.AddSingleton<Discovery.IPodDirectory>(Discovery.NoPodDirectory.Instance);
        }
        builder.Services.AddSingleton(new FlowLog());
        builder.Services.AddSingleton<MeshMetrics>();
        builder.Services.AddSingleton(sp => new FlowRecorder(
            sp.GetRequiredService<FlowLog>(), sp.GetRequiredService<MeshMetrics>(), sp.GetRequiredService<ILoggerFactory>(), config.Logging.AccessLog));
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
            sp.GetRequiredService<MeshMetrics>(), sp.GetService<Discovery.IIdentityPlacement>()));
        // Before MeshAgent, so it stops after it: watchdog pings go on through the drain.
        SystemdWatchdog.Register(builder.Services);
        // The gateway's consumers: in the registry's etcd when there is one (every node sees them), else in the state directory.
        builder.Services.AddSingleton<Consumers.IConsumerStore>(sp => config.Discovery.Source == DiscoverySource.Etcd
            ? new Consumers.ConsumerEtcdStore(new Discovery.EtcdStore(Discovery.EtcdRegistrySource.Options(config.Discovery.Etcd)), config.Discovery.Etcd.Prefix,
                sp.GetRequiredService<ILoggerFactory>().CreateLogger<Consumers.ConsumerEtcdStore>())
            : new Consumers.ConsumerFileStore(config.StateDir));
        builder.Services.AddSingleton(sp => new Consumers.ConsumerUsage(config.StateDir, logger: sp.GetRequiredService<ILoggerFactory>().CreateLogger<Consumers.ConsumerUsage>()));
        builder.Services.AddSingleton(sp => new Gateway.ConsumerPlans(config.Gateway.Plans, sp.GetRequiredService<Consumers.ConsumerUsage>()));
        builder.Services.AddSingleton(sp => new Consumers.ConsumerService(sp.GetRequiredService<Consumers.IConsumerStore>(), sp.GetRequiredService<Consumers.ConsumerUsage>(),
            sp.GetRequiredService<Gateway.ConsumerPlans>().DailyQuota));
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Consumers.ConsumerService>());
        builder.Services.AddSingleton<MeshAgent>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<MeshAgent>());
        // After MeshAgent: its backends are the registry's services and the tunnel pool, up by then.
        builder.Services.AddSingleton(new Gateway.GatewayRoutes(config.Gateway));
        builder.Services.AddSingleton<Gateway.MeshServiceConnector>();
        builder.Services.AddSingleton<Gateway.GatewayMetrics>();
        builder.Services.AddHostedService<Gateway.GatewayServer>();
        builder.Services.AddHostedService<MemoryReclaimer>();
        builder.Services.AddHostedService(sp => new TrustBundleWatcher(
            sp.GetRequiredService<IdentitySetup.Certificates>().Authority, config.Ca.Dir, sp.GetRequiredService<ILogger<TrustBundleWatcher>>()));
        builder.Services.AddHostedService(sp => new ConfigReloader(
            path, config, sp.GetRequiredService<WorkloadRegistry>(), sp.GetRequiredService<ConnectionManager>(),
            sp.GetRequiredService<AuthzMetrics>(), sp.GetRequiredService<Gateway.GatewayRoutes>(), sp.GetRequiredService<ILogger<ConfigReloader>>()));

        builder.Services.AddMeshTelemetry(config, telemetry);
        builder.Services.AddHostedService(sp => new AdminHttpServer(
            new AdminPorts(config.Ports.Admin, config.Ports.Metrics, config.Ports.Readiness), telemetry, sp.GetRequiredService<MeshAgent>(), sp.GetRequiredService<Consumers.ConsumerService>(),
            logLevel, sp.GetRequiredService<MeterProvider>(), sp.GetRequiredService<ILoggerFactory>()));

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

    /// <summary>sockaddr_un holds 108 bytes, with the terminating NUL.</summary>
    private const int MaxSocketPathBytes = 107;
}
