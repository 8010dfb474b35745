using NodeMesh.App;
using NodeMesh.Contracts;

namespace NodeMesh.Cli;

/// <summary><c>nodemesh workload add|remove|list</c>.</summary>
internal static class WorkloadCommands
{
    public static async Task<int> AddAsync(Options options)
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
        await AgentSocket.SendAsync(options, request);
        Console.WriteLine($"workload {request.Workload.Name} added");
        return 0;
    }

    internal static Dictionary<string, string>? ParseLabels(IReadOnlyList<string> values)
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

    public static async Task<int> RemoveAsync(Options options)
    {
        string name = options.Required("name");
        await AgentSocket.SendAsync(options, new ApiRequest { Command = "workload-remove", Name = name });
        Console.WriteLine($"workload {name} removed");
        return 0;
    }

    public static async Task<int> ListAsync(Options options)
    {
        OutputFormat format = Output.Format(options);
        ApiResponse response = await AgentSocket.SendAsync(options, new ApiRequest { Command = "workload-list" });
        Console.Write(Render([.. response.Workloads ?? []], format));
        return 0;
    }

    /// <summary>The listing in <paramref name="format"/>: JSON is an array of workload objects.</summary>
    public static string Render(List<WorkloadInfo> workloads, OutputFormat format) =>
        Output.Serialized(workloads, ApiJsonContext.Default.ListWorkloadInfo, format) ?? Table(workloads).Render(Output.IsWide(format));

    internal static Table Table(IEnumerable<WorkloadInfo> workloads)
    {
        var table = new Table(new Column("NAME"), new Column("IP"), new Column("MODE"), new Column("SOURCE"), new Column("CAPTURE", WideOnly: true),
            new Column("IDENTITY", WideOnly: true), new Column("NETNS", WideOnly: true), new Column("LABELS", WideOnly: true), new Column("CERTIFICATE"));
        foreach (WorkloadInfo w in workloads)
        {
            table.Add(w.Name, w.Ip, w.Mode ?? "PERMISSIVE", w.Source ?? "", w.Capture ?? "", w.Identity, w.Netns,
                w.Labels is { Count: > 0 } labels ? string.Join(",", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}")) : "-",
                w.Certificate ?? "");
        }

        return table;
    }
}
