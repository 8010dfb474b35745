using System.Globalization;

namespace NodeMesh.App;

/// <summary>A command's <c>--name value</c> options and <c>--flag</c>s; anything unknown is a usage error.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    private readonly List<string> _arguments = [];

    /// <summary>Parses against bare lists of option names (no help, no aliases, no positional arguments).</summary>
    public static Options Parse(string[] args, string[] valued, string[] flags) =>
        Parse(args, [.. valued.Select(v => new Cli.OptionSpec(v, "VALUE", "")), .. flags.Select(f => new Cli.OptionSpec(f, null, ""))], command: null, positional: false);

    /// <summary>Parses a command's arguments; <c>-h</c>/<c>--help</c> anywhere sets <see cref="HelpRequested"/> and stops.</summary>
    public static Options Parse(string[] args, Cli.CommandSpec command)
    {
        Options options = Parse(args, command.Options, command.Path, command.Arguments is not null);
        // Every missing option at once, rather than one per attempt.
        string[] missing = options.HelpRequested ? [] : [.. command.Options.Where(o => o.Required && options.Get(o.Name) is null).Select(o => "--" + o.Name)];
        return missing switch
        {
            [] => options,
            [string one] => throw new UsageException($"{one} is required"),
            _ => throw new UsageException($"{string.Join(", ", missing[..^1])} and {missing[^1]} are required"),
        };
    }

    private static Options Parse(string[] args, Cli.OptionSpec[] specs, string? command, bool positional)
    {
        var options = new Options();
        string help = command is null ? "" : $" for 'nodemesh {command}'; see 'nodemesh {command} --help'";
        if (command is not null && args.Any(a => a is "-h" or "--help"))
        {
            options.HelpRequested = true;
            return options;
        }

        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            Cli.OptionSpec? spec;
            string? inline = null;
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                string name = arg[2..];
                int eq = name.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0)
                {
                    inline = name[(eq + 1)..];
                    name = name[..eq];
                }

                spec = specs.FirstOrDefault(s => s.Name == name)
                    ?? throw new UsageException($"unknown option '--{Contracts.Printable.Of(name)}'{help}");
            }
            else if (arg.Length == 2 && arg[0] == '-' && specs.FirstOrDefault(s => s.Short == arg[1]) is { } shortSpec)
            {
                spec = shortSpec;
            }
            else if (arg.StartsWith('-') && arg.Length > 1)
            {
                throw new UsageException($"unknown option '{Contracts.Printable.Of(arg)}'{help}");
            }
            else if (positional)
            {
                options._arguments.Add(arg);
                continue;
            }
            else
            {
                throw new UsageException($"unexpected argument '{Contracts.Printable.Of(arg)}'{help}");
            }

            if (spec.IsFlag)
            {
                if (inline is not null)
                {
                    throw new UsageException($"--{spec.Name} takes no value{help}");
                }

                options._flags.Add(spec.Name);
                continue;
            }

            string? value = inline ?? (i + 1 < args.Length ? args[++i] : null);
            if (value is null)
            {
                throw new UsageException($"--{spec.Name} needs a value");
            }

            if (spec.Choices is { } choices && !choices.Contains(value, StringComparer.Ordinal))
            {
                throw new UsageException($"--{spec.Name}: '{Contracts.Printable.Of(value)}' is not one of {string.Join(", ", choices)}");
            }

            if (!options._values.TryGetValue(spec.Name, out List<string>? list))
            {
                options._values[spec.Name] = list = [];
            }

            list.Add(value);
        }

        return options;
    }

    /// <summary><c>-h</c> or <c>--help</c> was given: print the command's help instead of running it.</summary>
    public bool HelpRequested { get; private set; }

    /// <summary>The positional arguments, for a command that takes them.</summary>
    public IReadOnlyList<string> Arguments => _arguments;

    /// <summary>The option's value; given twice, the last one counts.</summary>
    public string? Get(string name) => _values.TryGetValue(name, out List<string>? list) ? list[^1] : null;

    /// <summary>Every value of a repeatable option, in order.</summary>
    public IReadOnlyList<string> GetAll(string name) => _values.TryGetValue(name, out List<string>? list) ? list : [];

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int? GetInt(string name) =>
        Get(name) is not { } value ? null
        : int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n
        : throw new UsageException($"--{name}: '{Contracts.Printable.Of(value)}' is not a whole number");

    public bool Flag(string name) => _flags.Contains(name);
}

internal sealed class UsageException(string message) : Exception(message);

/// <summary>The process exit codes, as documented in <c>nodemesh --help</c> and the README.</summary>
internal enum ExitCode
{
    Success = 0,

    /// <summary>A runtime failure: the agent is unreachable, a request or join was refused, a file could not be written.</summary>
    Failure = 1,

    /// <summary>Bad usage or an invalid configuration.</summary>
    Usage = 2,

    /// <summary>Not permitted: the command needs root (or capabilities), or a file or directory is not accessible to this user.</summary>
    NotPermitted = 3,
}

/// <summary>A command failed for a reason the message names, with the exit code it calls for.</summary>
internal sealed class CommandException(string message, ExitCode code) : Exception(message)
{
    public ExitCode Code { get; } = code;
}
