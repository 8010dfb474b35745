using System.Text.Json;
using NodeMesh.App;
using NodeMesh.Config;

namespace NodeMesh.Cli;

/// <summary>
/// <c>nodemesh check</c> validates the configuration (exit 2, every error with its field, when it is invalid), and
/// nothing else: it is the unit's ExecStartPre, which must be quick and must not fail on an unreachable peer.
/// <c>nodemesh doctor</c> validates it the same way, then checks that this machine can run it: exit 0 when no check
/// failed, 1 when one did.
/// </summary>
internal static class CheckCommand
{
    public static int Validate(Options options)
    {
        AgentConfig config = ConfigLoader.Load(options.Required("config"));
        Console.WriteLine(Summary(config));
        return 0;
    }

    private static string Summary(AgentConfig config) =>
        $"configuration is valid: node {config.Node.Name}, {config.Workloads.Count} local and {config.RemoteWorkloads.Count} remote workloads, {config.Nodes.Count} peer nodes";

    public static async Task<int> DoctorAsync(Options options)
    {
        string path = options.Required("config");
        OutputFormat format = Output.Format(options);
        AgentConfig config = ConfigLoader.Load(path);
        List<Finding> findings =
        [
            new(FindingLevel.Ok, "config", Summary(config)),
            .. DoctorFindings.Decide(await DoctorFactsGatherer.GatherAsync(config)),
        ];
        bool ok = findings.All(f => f.Level != FindingLevel.Fail);
        Console.Write(format == OutputFormat.Json
            ? JsonSerializer.Serialize(new DoctorReport(path, ok, findings), DoctorJsonContext.Default.DoctorReport) + "\n"
            : DoctorFindings.Render(findings));
        return ok ? 0 : (int)ExitCode.Failure;
    }
}
