using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace NodeMesh.Gateway;

/// <summary>
/// The agent's loggers as the gateway's web host sees them, without ASP.NET Core's per-request hosting
/// diagnostics: when that category is on at any level the host opens a log scope and starts an Activity for every
/// request (about 7 % of the CPU a request costs, measured); the gateway writes its own access log and span instead.
/// </summary>
internal sealed class GatewayHostLoggers(ILoggerFactory agent) : ILoggerFactory
{
    private const string HostingDiagnostics = "Microsoft.AspNetCore.Hosting.Diagnostics";

    public ILogger CreateLogger(string categoryName) =>
        categoryName == HostingDiagnostics ? NullLogger.Instance : agent.CreateLogger(categoryName);

    // The agent owns its providers: none is added or disposed through the gateway.
    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the gateway's web host logs through the agent's providers");

    public void Dispose()
    {
    }
}
