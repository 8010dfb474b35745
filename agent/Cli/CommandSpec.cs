namespace NodeMesh.Cli;

/// <summary>One option of a command: <c>--name VALUE</c>, or a flag when <see cref="Value"/> is null.</summary>
/// <param name="Value">The placeholder of its value in usage ("FILE", "N"); null for a flag.</param>
/// <param name="Default">What applies when it is not given, as shown in help; null when there is none.</param>
/// <param name="Short">A one-letter alias (<c>-o</c>), if any.</param>
/// <param name="Choices">The values it accepts, when they are a fixed set (help and completion offer them).</param>
internal sealed record OptionSpec(string Name, string? Value, string Description, string? Default = null, bool Required = false,
    bool Repeatable = false, char? Short = null, string[]? Choices = null)
{
    public bool IsFlag => Value is null;

    public string Usage => (Short is char s ? $"-{s}, " : "") + $"--{Name}" + (Value is null ? "" : $" {Value}");
}

/// <summary>
/// A command as the operator types it ("workload add"): what it does, its options, an example. Help, parsing,
/// shell completion and the man page's test all read this one table, so they cannot disagree.
/// </summary>
/// <param name="Arguments">Its positional arguments in usage ("bash|zsh|fish"); null when it takes none.</param>
internal sealed record CommandSpec(string Path, string Summary, OptionSpec[] Options, string Example, string? Arguments = null, string? Details = null)
{
    public string Usage => $"nodemesh {Path}" + (Arguments is null ? "" : $" {Arguments}")
        + string.Concat(Options.Select(o => o.Required ? $" --{o.Name} {o.Value}" : ""))
        + (Options.Any(o => !o.Required) ? " [options]" : "");
}

/// <summary>Every command the CLI knows.</summary>
internal static class CommandTable
{
    public const string DefaultSocket = "/run/nodemesh/agent.sock";

    public static readonly string[] OutputFormats = ["table", "wide", "json", "yaml"];

    private static readonly OptionSpec Socket = new("socket", "PATH", "the agent's API socket",
        Default: $"$NODEMESH_SOCKET, else the apiSocket of --config, else {DefaultSocket}");

    private static readonly OptionSpec SocketConfig = new("config", "FILE", "read the API socket's path (apiSocket) from this configuration file");

    private static readonly OptionSpec Output = new("output", "FORMAT", "output format: table, wide (more columns), json or yaml", Default: "table", Short: 'o', Choices: OutputFormats);

    private static readonly OptionSpec Json = new("json", null, "the same as -o json");

    private static readonly OptionSpec[] AgentOptions = [Socket, SocketConfig];

    private static readonly OptionSpec ConsumerName = new("name", "NAME", "the consumer's name (a-z, 0-9, '-', '.')", Required: true);

    private static readonly OptionSpec Plan = new("plan", "PLAN", "one of gateway.plans: its rate limits and daily quota apply");

    private static readonly OptionSpec Certificate = new("certificate", "MATCH",
        "a client certificate that identifies it: uri:SAN, dns:SAN, subject:DN or sha256:FINGERPRINT (repeatable; replaces the list)", Repeatable: true);

    private static readonly OptionSpec ExpiresIn = new("expires-in", "DURATION", "how long the new key is valid (\"90d\")", Default: "until revoked");

    private static readonly OptionSpec KeyId = new("key", "ID", "the key's id, as consumer show lists it", Required: true);

    private static readonly OptionSpec[] ListingOptions = [Output, Json, Socket, SocketConfig];

    public static readonly CommandSpec[] All =
    [
        new("run", "run the agent in the foreground (SIGTERM stops it: stop accepting, drain flows, exit)",
            [new("config", "FILE", "the configuration file (format: README.md, Configuration)", Required: true)],
            "nodemesh run --config /etc/nodemesh/config.json"),
        new("check", "validate a configuration file and exit (fast; no machine checks: see doctor)",
            [new("config", "FILE", "the configuration file to check", Required: true)],
            "nodemesh check --config /etc/nodemesh/config.json",
            Details: "Every problem is listed with the JSON path of its field; exit code 2 when the file is invalid."),
        new("doctor", "validate a configuration file, then check that this machine can run it, each finding with what to do",
            [new("config", "FILE", "the configuration file", Required: true),
             new("output", "FORMAT", "output format: table or json", Default: "table", Short: 'o', Choices: ["table", "json"]), Json],
            "nodemesh doctor --config /etc/nodemesh/config.json",
            Details: "Checks: privileges (root, or CAP_NET_ADMIN and CAP_SYS_ADMIN); the tools the capture runs (iptables-save/-restore, ip6tables-save/-restore, nsenter, ip); the kernel's REDIRECT, TPROXY and mark support (tried in a throw-away namespace); each workload's namespace exists and holds its IP; the files of the certificate source (ca.dir, or ca.trustBundle and ca.joinTokenFile, or certificates.dir); the tunnel (and CA) port free, or held by the running agent; peers' tunnel ports and the CA server accept connections (2s timeout).\nEach finding is one line: ok|warn|fail, what was checked, and what to do. Exit code 0 when nothing failed, 1 when a check failed, 2 when the configuration is invalid."),
        new("ca init", "create the mesh CA: ca.crt, ca.key and join.key (mode 0600) in DIR",
            [new("dir", "DIR", "where to create the CA", Required: true),
             new("trust-domain", "TD", "the mesh's SPIFFE trust domain", Default: "cluster.local"),
             new("days", "N", "the root's lifetime in days", Default: "3650"),
             new("intermediate-days", "N", "also create an intermediate CA that signs, valid N days", Default: "none")],
            "nodemesh ca init --dir /var/lib/nodemesh/ca --trust-domain cluster.local"),
        new("ca token create", "print a join token with which node NAME gets its certificate from the CA server",
            [new("dir", "DIR", "the CA's directory", Required: true),
             new("node", "NAME", "the node the token is for", Required: true),
             new("ttl", "DURATION", "how long the token is valid", Default: "1h")],
            "nodemesh ca token create --dir /var/lib/nodemesh/ca --node node2 --ttl 30m"),
        new("workload add", "capture a workload: its traffic goes through the mesh under its identity",
            [new("name", "NAME", "the workload's name (a-z, 0-9, '-', '.')", Required: true),
             new("ip", "IP", "its IPv4 address, inside its namespace", Required: true),
             new("identity", "SPIFFE-ID", "its identity, spiffe://TRUST-DOMAIN/ns/NS/sa/SA", Required: true),
             new("netns", "PATH", "its network namespace (/var/run/netns/NAME or /proc/PID/ns/net)", Required: true),
             new("mode", "MODE", "STRICT refuses plaintext from outside the mesh", Default: "PERMISSIVE", Choices: ["STRICT", "PERMISSIVE"]),
             new("label", "KEY=VALUE", "a label that policies select on (repeatable)", Repeatable: true),
             .. AgentOptions],
            "nodemesh workload add --name api --ip 10.240.1.3 --identity spiffe://cluster.local/ns/shop/sa/api --netns /var/run/netns/api --label app=api"),
        new("workload remove", "stop capturing a workload and remove its rules",
            [new("name", "NAME", "the workload's name", Required: true), .. AgentOptions],
            "nodemesh workload remove --name api"),
        new("workload list", "the workloads this agent captures, with their certificate's state",
            ListingOptions, "nodemesh workload list -o wide"),
        new("consumer create", "add an API consumer of the gateway (then give it a key: consumer issue-key)",
            [ConsumerName, Plan, new("description", "TEXT", "what the consumer is, for operators"), Certificate,
             new("pending", null, "create it awaiting approval (its requests are refused until consumer enable)"), .. AgentOptions],
            "nodemesh consumer create --name shop-app --plan gold --certificate uri:spiffe://partner.example/app"),
        new("consumer list", "the gateway's consumers, with their plan, keys and today's requests", ListingOptions, "nodemesh consumer list -o wide"),
        new("consumer show", "one consumer: its keys (by id), certificates and usage", [ConsumerName, Output, Json, Socket, SocketConfig],
            "nodemesh consumer show --name shop-app"),
        new("consumer update", "change a consumer's plan, description or certificates", [ConsumerName, Plan, new("description", "TEXT", "what the consumer is"),
             Certificate, .. AgentOptions], "nodemesh consumer update --name shop-app --plan silver"),
        new("consumer enable", "let a disabled or pending consumer in", [ConsumerName, .. AgentOptions], "nodemesh consumer enable --name shop-app"),
        new("consumer disable", "refuse a consumer's requests (403) until it is enabled again; its keys stay", [ConsumerName, .. AgentOptions],
            "nodemesh consumer disable --name shop-app"),
        new("consumer delete", "remove a consumer and its keys", [ConsumerName, .. AgentOptions], "nodemesh consumer delete --name shop-app"),
        new("consumer issue-key", "issue a new API key to a consumer and print it (shown this once; only its hash is stored)",
            [ConsumerName, ExpiresIn, .. AgentOptions], "nodemesh consumer issue-key --name shop-app --expires-in 90d > shop-app.key"),
        new("consumer rotate-key", "issue a new key in place of one, which stays valid for the grace period",
            [ConsumerName, KeyId, ExpiresIn, new("grace", "DURATION", "how long the old key stays valid beside the new one", Default: "0s (it ends now)"), .. AgentOptions],
            "nodemesh consumer rotate-key --name shop-app --key 3f9c2a7b1d4e6f80 --grace 1h"),
        new("consumer revoke-key", "revoke a key: refused from now on, on every node", [ConsumerName, KeyId, .. AgentOptions],
            "nodemesh consumer revoke-key --name shop-app --key 3f9c2a7b1d4e6f80"),
        new("flows", "the recent flows this agent carried or refused, newest last",
            [new("workload", "NAME", "only flows from or to this workload"),
             new("denied", null, "only flows refused by a policy or by STRICT mode"),
             new("since", "DURATION", "only flows that ended in the last DURATION (\"5m\", \"1h\")"),
             new("follow", null, "keep printing new flows as they end, until Ctrl-C or SIGTERM", Short: 'f'),
             .. ListingOptions],
            "nodemesh flows --workload api --since 10m -o wide"),
        new("status", "this node: peers and tunnels, certificates and their expiry, workloads, flows, memory",
            ListingOptions, "nodemesh status -o yaml"),
        new("version", "print the version", [], "nodemesh version"),
        new("completion", "print a shell completion script", [], "nodemesh completion bash > /etc/bash_completion.d/nodemesh", Arguments: "bash|zsh|fish",
            Details: "bash: source <(nodemesh completion bash), or save it as /etc/bash_completion.d/nodemesh; zsh: nodemesh completion zsh > \"${fpath[1]}/_nodemesh\"; fish: nodemesh completion fish > ~/.config/fish/completions/nodemesh.fish"),
        new("help", "help on a command", [], "nodemesh help workload add", Arguments: "[COMMAND]"),
    ];

    /// <summary>The command named by the longest prefix of <paramref name="args"/>, and how many words it took.</summary>
    public static (CommandSpec? Command, int Words) Find(IReadOnlyList<string> args)
    {
        CommandSpec? best = null;
        int words = 0;
        foreach (CommandSpec command in All)
        {
            string[] path = command.Path.Split(' ');
            if (path.Length > words && path.Length <= args.Count && path.Select((w, i) => args[i] == w).All(m => m))
            {
                best = command;
                words = path.Length;
            }
        }

        return (best, words);
    }

    /// <summary>The commands under a group such as "ca" or "workload"; empty when <paramref name="group"/> is not one.</summary>
    public static IReadOnlyList<CommandSpec> Under(string group) =>
        group.Length == 0 ? [] : All.Where(c => c.Path.StartsWith(group + " ", StringComparison.Ordinal)).ToList();
}
