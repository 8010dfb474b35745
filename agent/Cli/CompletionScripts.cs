using System.Text;

namespace NodeMesh.Cli;

/// <summary>
/// <c>nodemesh completion bash|zsh|fish</c>: completion scripts written from the command table, so every command,
/// sub-command, option and fixed choice (-o's formats, --mode's values) is offered, and a new command is too.
/// zsh uses the bash script through bashcompinit (one script to keep right, not two).
/// </summary>
internal static class CompletionScripts
{
    public static readonly string[] Shells = ["bash", "zsh", "fish"];

    public static string For(string shell) => shell switch
    {
        "bash" => Bash(),
        "zsh" => "#compdef nodemesh\nautoload -U +X bashcompinit && bashcompinit\n" + Bash(),
        "fish" => Fish(),
        _ => throw new App.UsageException($"no completion for '{Contracts.Printable.Of(shell)}': give one of {string.Join(", ", Shells)}"),
    };

    /// <summary>The words that may follow a command path ("" at the top, "workload", "ca token", "flows"): sub-commands or options.</summary>
    internal static IReadOnlyDictionary<string, string[]> Words()
    {
        var words = new Dictionary<string, string[]>(StringComparer.Ordinal);
        IEnumerable<string> prefixes = CommandTable.All.SelectMany(c =>
        {
            string[] path = c.Path.Split(' ');
            return Enumerable.Range(0, path.Length).Select(n => string.Join(' ', path[..n]));
        }).Distinct();
        foreach (string prefix in prefixes)
        {
            int depth = prefix.Length == 0 ? 0 : prefix.Split(' ').Length;
            words[prefix] = [.. CommandTable.All.Where(c => prefix.Length == 0 || c.Path.StartsWith(prefix + " ", StringComparison.Ordinal))
                .Select(c => c.Path.Split(' ')[depth]).Distinct()];
        }

        foreach (CommandSpec command in CommandTable.All)
        {
            words[command.Path] = command.Path switch
            {
                "completion" => Shells,
                "help" => words[""],
                _ => [.. command.Options.Select(o => "--" + o.Name).Append("--help")],
            };
        }

        return words;
    }

    private static string Bash()
    {
        var text = new StringBuilder();
        text.Append("""
            # bash completion for nodemesh (nodemesh completion bash)
            _nodemesh() {
                local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" path="" i words
                # The command path: the words after 'nodemesh' up to the first option.
                for ((i = 1; i < COMP_CWORD; i++)); do
                    [[ ${COMP_WORDS[i]} == -* ]] && break
                    path="${path:+$path }${COMP_WORDS[i]}"
                done
                case "$prev" in

            """);
        foreach (var (names, choices) in OptionValues())
        {
            text.Append($"        {names}) ").Append(choices is null
                ? "COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
                : $"COMPREPLY=($(compgen -W \"{string.Join(' ', choices)}\" -- \"$cur\")); return ;;\n");
        }

        text.Append("    esac\n    case \"$path\" in\n");
        foreach ((string path, string[] words) in Words())
        {
            text.Append($"        \"{path}\") words=\"{string.Join(' ', words)}\" ;;\n");
        }

        text.Append("""
                    *) words="" ;;
                esac
                COMPREPLY=($(compgen -W "$words" -- "$cur"))
            }
            complete -F _nodemesh nodemesh

            """);
        return text.ToString();
    }

    /// <summary>Each valued option's spellings ("-o|--output") and its choices, or null for a path (completed as a file).</summary>
    private static IEnumerable<(string Names, string[]? Choices)> OptionValues() =>
        CommandTable.All.SelectMany(c => c.Options).Where(o => !o.IsFlag)
            .GroupBy(o => o.Name)
            .Select(g =>
            {
                OptionSpec first = g.First();
                string names = (g.Any(o => o.Short is not null) ? $"-{g.First(o => o.Short is not null).Short}|" : "") + "--" + first.Name;
                // The widest choices, for an option that commands restrict differently (doctor's -o has only table and json).
                string[]? choices = g.Any(o => o.Choices is null) ? (IsPath(first) ? null : []) : [.. g.MaxBy(o => o.Choices!.Length)!.Choices!];
                return (names, choices);
            });

    private static bool IsPath(OptionSpec option) => option.Value is "FILE" or "PATH" or "DIR";

    private static string Fish()
    {
        var text = new StringBuilder("# fish completion for nodemesh (nodemesh completion fish)\ncomplete -c nodemesh -f\n");
        // A group ("ca") is offered once, however many commands it has.
        var groups = new HashSet<string>(StringComparer.Ordinal);
        IReadOnlyDictionary<string, string[]> words = Words();
        foreach (CommandSpec command in CommandTable.All)
        {
            string[] path = command.Path.Split(' ');
            for (int depth = 0; depth < path.Length; depth++)
            {
                string parent = string.Join(' ', path[..depth]);
                string condition = depth == 0 ? "__fish_use_subcommand"
                    : $"__fish_seen_subcommand_from {path[depth - 1]}; and not __fish_seen_subcommand_from {string.Join(' ', words[parent])}";
                string description = depth == path.Length - 1 ? command.Summary : $"{string.Join(' ', path[..(depth + 1)])} commands";
                if (depth < path.Length - 1 && !groups.Add(string.Join(' ', path[..(depth + 1)])))
                {
                    continue;
                }

                text.Append($"complete -c nodemesh -n '{condition}' -a {path[depth]} -d {Quote(description)}\n");
            }

            // With its group's word too: "workload list" and "consumer list" end alike but are not one command.
            string seen = path.Length > 1 ? $"__fish_seen_subcommand_from {path[0]}; and __fish_seen_subcommand_from {path[^1]}" : $"__fish_seen_subcommand_from {path[^1]}";
            foreach (OptionSpec option in command.Options)
            {
                text.Append($"complete -c nodemesh -n '{seen}' -l {option.Name}");
                if (option.Short is char s)
                {
                    text.Append($" -s {s}");
                }

                if (option.Choices is { } choices)
                {
                    text.Append($" -x -a '{string.Join(' ', choices)}'");
                }
                else if (!option.IsFlag)
                {
                    text.Append(IsPath(option) ? " -r -F" : " -x");
                }

                text.Append($" -d {Quote(option.Description)}\n");
            }

            if (command.Path == "completion")
            {
                text.Append($"complete -c nodemesh -n '{seen}' -a '{string.Join(' ', Shells)}'\n");
            }
        }

        return text.ToString();
    }

    private static string Quote(string text) => "'" + text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal) + "'";
}
