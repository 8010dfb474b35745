using System.Globalization;

namespace NodeMesh.App;

/// <summary>A command's <c>--name value</c> options and <c>--flag</c>s; anything unknown is a usage error.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
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

                options._values[name] = value;
            }
            else
            {
                throw new UsageException($"unknown option '--{Contracts.Printable.Of(name)}'");
            }
        }

        return options;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int? GetInt(string name) =>
        Get(name) is not { } value ? null
        : int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n
        : throw new UsageException($"--{name}: '{Contracts.Printable.Of(value)}' is not a whole number");

    public bool Flag(string name) => _flags.Contains(name);
}

internal sealed class UsageException(string message) : Exception(message);
