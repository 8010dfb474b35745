using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Contracts;
using NodeMesh.Telemetry;
using OpenTelemetry.Metrics;

namespace NodeMesh.Admin;

/// <summary>The agent's HTTP ports, served by one Kestrel instance and told apart by the port a request came in on (never by its Host header).</summary>
/// <param name="Admin">The admin API and status page, on 127.0.0.1 only (0: off).</param>
/// <param name="Metrics">Prometheus text on every address (0: off).</param>
/// <param name="Readiness">Readiness and liveness on every address (0: off).</param>
internal sealed record AdminPorts(int Admin, int Metrics, int Readiness);

/// <summary>
/// Kestrel for the operator's endpoints: the admin API (<c>/config_dump</c>, <c>/workloads</c>, <c>/certificates</c>, <c>/tunnels</c>,
/// <c>/policies</c>, <c>/flows</c>, <c>/status</c>, <c>/logging</c>) and a status page at <c>/</c> on the admin port;
/// <c>/metrics</c> and <c>/stats/prometheus</c> on the metrics port; <c>/healthz/ready</c> and <c>/healthz/live</c>
/// on the readiness port. Started after the agent, so the first readiness answer already knows its state.
/// </summary>
internal sealed partial class AdminHttpServer(
    AdminPorts ports, TelemetryPlan plan, IAgentState agent, Consumers.ConsumerService consumers, LogLevelSwitch logLevel, MeterProvider meters, ILoggerFactory loggers)
    : IHostedService, IAsyncDisposable
{
    private WebApplication? _app;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ILogger logger = loggers.CreateLogger<AdminHttpServer>();
        Log.Plan(logger, plan.Describe());
        if (ports is { Admin: 0, Metrics: 0, Readiness: 0 })
        {
            return;
        }

        WebApplicationBuilder builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Services.AddSingleton(loggers);

        // Started and stopped by the agent's host: no console lifetime of its own (signals, start-up banners).
        builder.Services.AddSingleton<IHostLifetime, Hosting.EmbeddedServerLifetime>();
        builder.Services.AddRoutingCore();
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            if (ports.Admin != 0)
            {
                kestrel.Listen(IPAddress.Loopback, ports.Admin);
            }

            if (ports.Metrics != 0)
            {
                kestrel.Listen(IPAddress.Any, ports.Metrics);
            }

            if (ports.Readiness != 0)
            {
                kestrel.Listen(IPAddress.Any, ports.Readiness);
            }
        });
        _app = builder.Build();
        OnPort(_app, ports.Admin, MapAdmin);
        OnPort(_app, ports.Metrics, endpoints =>
        {
            endpoints.MapPrometheusScrapingEndpoint("/metrics", meters, null, null);
            endpoints.MapPrometheusScrapingEndpoint("/stats/prometheus", meters, null, null);
        });
        OnPort(_app, ports.Readiness, MapReadiness);
        _app.Run(context =>
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        });
        try
        {
            await _app.StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
        {
            // Taken ports (IOException from Kestrel), or no descriptor left for a listener (SocketException).
            throw new IOException($"cannot serve the admin, metrics or readiness port ({ports.Admin}, {ports.Metrics}, {ports.Readiness}: ports.admin, ports.metrics, ports.readiness; 0 turns one off): {ex.Message}", ex);
        }

        Log.Serving(logger, ports.Admin, ports.Metrics, ports.Readiness);
    }

    /// <summary>
    /// Nothing yet: the host stops its services in reverse order, so this one would stop before the agent drains.
    /// The ports stay up through the drain (readiness answers 503 "stopping", metrics count the last flows) and
    /// close when the host is disposed.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _app.StopAsync(deadline.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await _app.DisposeAsync();
            _app = null;
        }
    }

    /// <summary>Routes requests that arrived on <paramref name="port"/> to its own endpoints.</summary>
    private static void OnPort(WebApplication app, int port, Action<IEndpointRouteBuilder> map)
    {
        if (port == 0)
        {
            return;
        }

        app.MapWhen(context => context.Connection.LocalPort == port, branch =>
        {
            branch.UseRouting();
            branch.UseEndpoints(map);
        });
    }

    // Every endpoint is a plain RequestDelegate that writes its own answer: no request-delegate generation is
    // needed under Native AOT, and each answer's JSON comes from the source-generated context.
    private void MapAdmin(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/", context => Write(context, StatusCodes.Status200OK, "text/html; charset=utf-8", StatusPage.Html));
        endpoints.MapGet("/status", async context =>
            await WriteJson(context, (await agent.QueryAsync("status", context.RequestAborted)).Status ?? new AgentStatus(), Json.AgentStatus));
        endpoints.MapGet("/workloads", async context =>
            await WriteJson(context, (await agent.QueryAsync("workload-list", context.RequestAborted)).Workloads ?? [], Json.IReadOnlyListWorkloadInfo));
        endpoints.MapGet("/flows", async context =>
            await WriteJson(context, (await agent.QueryAsync("flows", context.RequestAborted)).Flows ?? [], Json.IReadOnlyListFlowRecord));
        endpoints.MapGet("/tunnels", async context =>
        {
            AgentStatus status = (await agent.QueryAsync("status", context.RequestAborted)).Status ?? new AgentStatus();
            await WriteJson(context, new TunnelsView { Listener = status.Listener, Peers = status.Peers }, Json.TunnelsView);
        });
        endpoints.MapGet("/certificates", context => WriteJson(context, agent.Certificates(), Json.IReadOnlyListCertificateView));
        endpoints.MapGet("/policies", context => WriteJson(context, agent.Policies(), Json.IReadOnlyListPolicyView));
        endpoints.MapGet("/config_dump", context => Write(context, StatusCodes.Status200OK, "application/json", agent.ConfigJson()));
        endpoints.MapGet("/logging", context => WriteJson(context, new LoggingView { Level = logLevel.Level.ToString() }, Json.LoggingView));
        endpoints.MapPost("/logging", context =>
        {
            string? level = context.Request.Query["level"];
            if (!Enum.TryParse(level, ignoreCase: true, out LogLevel parsed) || !Enum.IsDefined(parsed) || int.TryParse(level, out _))
            {
                return WriteJson(context, new AdminError { Error = $"level: '{Contracts.Printable.Of(level ?? "")}' is not one of trace, debug, information, warning, error, critical, none" },
                    Json.AdminError, StatusCodes.Status400BadRequest);
            }

            logLevel.Level = parsed;
            Log.LevelChanged(loggers.CreateLogger<AdminHttpServer>(), parsed.ToString());
            return WriteJson(context, new LoggingView { Level = parsed.ToString() }, Json.LoggingView);
        });
        MapConsumers(endpoints);
    }

    /// <summary>
    /// The consumers: <c>GET /consumers</c>, <c>GET|PATCH|DELETE /consumers/NAME</c>, <c>POST /consumers</c>,
    /// <c>POST /consumers/NAME/enable|disable</c>, <c>POST /consumers/NAME/keys</c> (a new key, shown this once),
    /// <c>POST /consumers/NAME/keys/ID/rotate</c>, <c>DELETE /consumers/NAME/keys/ID</c>. Every change needs
    /// <c>Content-Type: application/json</c>: a web page cannot send that to 127.0.0.1 without a preflight, which
    /// this port never allows, so no page a local browser opens can change consumers.
    /// </summary>
    private void MapConsumers(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/consumers", context => ConsumersAsync(context, "consumer-list", null, list: true));
        endpoints.MapGet("/consumers/{name}", context => ConsumersAsync(context, "consumer-get", new ConsumerChange { Name = Name(context) }));
        endpoints.MapPost("/consumers", async context => await ChangeAsync(context, "consumer-create", c => c));
        endpoints.MapMethods("/consumers/{name}", ["PATCH"], async context => await ChangeAsync(context, "consumer-update", c => c with { Name = Name(context) }));
        endpoints.MapDelete("/consumers/{name}", async context => await ChangeAsync(context, "consumer-delete", _ => new ConsumerChange { Name = Name(context) }));
        endpoints.MapPost("/consumers/{name}/enable", async context => await ChangeAsync(context, "consumer-enable", _ => new ConsumerChange { Name = Name(context) }));
        endpoints.MapPost("/consumers/{name}/disable", async context => await ChangeAsync(context, "consumer-disable", _ => new ConsumerChange { Name = Name(context) }));
        endpoints.MapPost("/consumers/{name}/keys", async context => await ChangeAsync(context, "consumer-issue-key", c => c with { Name = Name(context) }));
        endpoints.MapPost("/consumers/{name}/keys/{id}/rotate", async context =>
            await ChangeAsync(context, "consumer-rotate-key", c => c with { Name = Name(context), KeyId = (string?)context.Request.RouteValues["id"] }));
        endpoints.MapDelete("/consumers/{name}/keys/{id}", async context =>
            await ChangeAsync(context, "consumer-revoke-key", _ => new ConsumerChange { Name = Name(context), KeyId = (string?)context.Request.RouteValues["id"] }));
    }

    private static string Name(HttpContext context) => (string?)context.Request.RouteValues["name"] ?? "";

    private async Task ChangeAsync(HttpContext context, string command, Func<ConsumerChange, ConsumerChange> complete)
    {
        if (!(context.Request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) ?? false))
        {
            await WriteJson(context, new AdminError { Error = "a change needs Content-Type: application/json (and a JSON object as its body, {} when it has no fields)" },
                Json.AdminError, StatusCodes.Status415UnsupportedMediaType);
            return;
        }

        ConsumerChange body;
        try
        {
            body = context.Request.ContentLength == 0
                ? new ConsumerChange()
                : await JsonSerializer.DeserializeAsync(context.Request.Body, ApiJsonContext.Default.ConsumerChange, context.RequestAborted) ?? new ConsumerChange();
        }
        catch (JsonException ex)
        {
            await WriteJson(context, new AdminError { Error = $"the body is not a consumer change: {ex.Message}" }, Json.AdminError, StatusCodes.Status400BadRequest);
            return;
        }

        await ConsumersAsync(context, command, complete(body));
    }

    private async Task ConsumersAsync(HttpContext context, string command, ConsumerChange? change, bool list = false)
    {
        (ApiResponse response, int status) = await consumers.ExecuteAsync(command, change, context.RequestAborted);
        if (!response.Ok)
        {
            await WriteJson(context, new AdminError { Error = response.Error ?? "refused" }, Json.AdminError, status);
        }
        else if (list)
        {
            await WriteJson(context, response.Consumers ?? [], Json.IReadOnlyListConsumerInfo, status);
        }
        else
        {
            await WriteJson(context, new ConsumerView { Consumer = response.Consumers is [var first, ..] ? first : null, ApiKey = response.IssuedKey }, Json.ConsumerView, status);
        }
    }

    private void MapReadiness(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz/ready", context =>
        {
            IReadOnlyList<string> missing = agent.NotReady();
            return WriteJson(context, new ReadinessView { Ready = missing.Count == 0, Missing = missing }, Json.ReadinessView,
                missing.Count == 0 ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        });

        // Alive: the process answers. (A stuck agent stops answering; systemd's watchdog covers the rest.)
        endpoints.MapGet("/healthz/live", context => Write(context, StatusCodes.Status200OK, "text/plain", "ok\n"));
    }

    private static Task WriteJson<T>(HttpContext context, T value, JsonTypeInfo<T> type, int status = StatusCodes.Status200OK) =>
        Write(context, status, "application/json", JsonSerializer.Serialize(value, type));

    /// <summary>The admin answers' JSON, read by people with curl as much as by programs: quotes and angle brackets as they are.</summary>
    private static readonly AdminJsonContext Json = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    private static Task Write(HttpContext context, int status, string contentType, string body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = contentType;
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.WriteAsync(body, context.RequestAborted);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 900, Level = LogLevel.Information, Message = "admin on 127.0.0.1:{Admin}, metrics on :{Metrics}/metrics, readiness on :{Readiness}/healthz/ready (0: off)")]
        public static partial void Serving(ILogger logger, int admin, int metrics, int readiness);

        [LoggerMessage(EventId = 901, Level = LogLevel.Information, Message = "telemetry: {Plan}")]
        public static partial void Plan(ILogger logger, string plan);

        [LoggerMessage(EventId = 902, Level = LogLevel.Warning, Message = "log level set to {Level} through the admin API")]
        public static partial void LevelChanged(ILogger logger, string level);
    }
}
