using System.Globalization;

namespace NodeMesh.App;

/// <summary>A command's <c>--name value</c> options and <c>--flag</c>s; anything unknown is a usage error.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, List<string>> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    public static Options Parse(string[] args, string[] valued, string[] flags)
    {
        var options = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw new UsageException($"unexpected argument '{Contracts.Printable.Of(arg)}'");
            }

            string name = arg[2..];
            string? inline = null;
            int eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                inline = name[(eq + 1)..];
                name = name[..eq];
            }

            if (flags.Contains(name))
            {
                options._flags.Add(name);
            }
            else if (valued.Contains(name))
            {
                string? value = inline ?? (i + 1 < args.Length ? args[++i] : null);
                if (value is null)
                {
                    throw new UsageException($"--{name} needs a value");
                }

                if (!options._values.TryGetValue(name, out List<string>? list))
                {
                    options._values[name] = list = [];
                }

                list.Add(value);
            }
            else
            {
                throw new UsageException($"unknown option '--{Contracts.Printable.Of(name)}'");
            }
        }

        return options;
    }

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
