using System.Text;

namespace NodeMesh.Cli;

/// <summary>The text of <c>nodemesh --help</c>, <c>nodemesh COMMAND --help</c> and <c>nodemesh help COMMAND</c>.</summary>
internal static class HelpText
{
    public const string ExitCodes = """
        Exit codes: 0 success; 1 a runtime failure (agent unreachable, request refused, CA refused, a check
        failed); 2 bad usage or an invalid configuration; 3 not permitted (needs root, or CAP_NET_ADMIN and
        CAP_SYS_ADMIN, or a file or directory this user cannot read or write).
        """;

    public static string Overview()
    {
        var text = new StringBuilder();
        text.AppendLine("nodemesh — the NodeMesh node agent").AppendLine().AppendLine("Usage: nodemesh COMMAND [options]").AppendLine().AppendLine("Commands:");
        int width = CommandTable.All.Max(c => c.Path.Length);
        foreach (CommandSpec command in CommandTable.All)
        {
            text.Append("  ").Append(command.Path.PadRight(width + 2)).AppendLine(command.Summary);
        }

        text.AppendLine()
            .AppendLine("Run 'nodemesh COMMAND --help' (or 'nodemesh help COMMAND') for a command's options and an example.")
            .AppendLine($"Commands that talk to the agent find its socket in --socket, else $NODEMESH_SOCKET, else the apiSocket of --config FILE, else {CommandTable.DefaultSocket}.")
            .AppendLine("Listings take -o table|wide|json|yaml (--json is -o json).")
            .AppendLine()
            .AppendLine(ExitCodes);
        return text.ToString();
    }

    public static string For(CommandSpec command)
    {
        var text = new StringBuilder();
        text.AppendLine($"nodemesh {command.Path} — {command.Summary}").AppendLine().AppendLine($"Usage: {command.Usage}");
        if (command.Details is { } details)
        {
            text.AppendLine().AppendLine(details);
        }

        if (command.Options.Length > 0)
        {
            text.AppendLine().AppendLine("Options:");
            int width = command.Options.Max(o => o.Usage.Length);
            foreach (OptionSpec option in command.Options)
            {
                text.Append("  ").Append(option.Usage.PadRight(width + 2)).Append(option.Description);
                if (option.Required)
                {
                    text.Append(" (required)");
                }
                else if (option.Default is { } value)
                {
                    text.Append($" (default: {value})");
                }

                text.AppendLine();
            }
        }

        text.Append("  ").Append("-h, --help".PadRight(command.Options.Length == 0 ? 12 : command.Options.Max(o => o.Usage.Length) + 2)).AppendLine("this help");
        text.AppendLine().AppendLine("Example:").AppendLine($"  {command.Example}");
        return text.ToString();
    }

    /// <summary>The help of a group of commands ("nodemesh workload"): its sub-commands.</summary>
    public static string ForGroup(string group, IReadOnlyList<CommandSpec> commands)
    {
        var text = new StringBuilder();
        text.AppendLine($"Usage: nodemesh {group} COMMAND [options]").AppendLine().AppendLine("Commands:");
        int width = commands.Max(c => c.Path.Length);
        foreach (CommandSpec command in commands)
        {
            text.Append("  ").Append(command.Path.PadRight(width + 2)).AppendLine(command.Summary);
        }

        text.AppendLine().AppendLine($"Run 'nodemesh {group} COMMAND --help' for a command's options.");
        return text.ToString();
    }
}
