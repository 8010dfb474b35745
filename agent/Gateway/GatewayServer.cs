using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// The edge listener: Kestrel on <c>gateway.listeners</c> with the limits of <c>gateway.limits</c>, every request
/// routed by <see cref="GatewayRoutes"/> and forwarded by YARP's forwarder, to mesh services through the tunnels
/// or to plain backends. Started after the agent (the registry and the tunnel pool are up), stopped with it.
/// </summary>
internal sealed class GatewayServer(
    AgentConfig config, GatewayRoutes routes, MeshServiceConnector mesh, State.WorkloadRegistry registry, GatewayMetrics metrics, Consumers.IConsumerStore consumers,
    ConsumerPlans plans, ILoggerFactory loggers) : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan CertificatePoll = TimeSpan.FromSeconds(2);

    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _app;
    private BackendPools? _pools;
    private Task _certificateWatch = Task.CompletedTask;
    private readonly Dictionary<string, JwtAuthenticator> _authenticators = new(StringComparer.Ordinal);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        GatewayConfig gateway = config.Gateway;
        if (gateway.Listeners.Count == 0)
        {
            return;
        }

        ILogger logger = loggers.CreateLogger<GatewayServer>();
        var certificates = new Dictionary<string, ListenerCertificates>(StringComparer.Ordinal);
        var clientRoots = new Dictionary<string, X509Certificate2Collection>(StringComparer.Ordinal);
        foreach (GatewayListenerConfig listener in gateway.Listeners.Where(l => l.Protocol == GatewayProtocol.Https))
        {
            try
            {
                certificates[listener.Name] = ListenerCertificates.Load(listener.Tls!.Certificates);
                if (listener.Tls.ClientValidation is { } clients)
                {
                    clientRoots[listener.Name] = BackendClients.LoadRoots(clients.CaFile);
                }
            }
            catch (InvalidDataException ex)
            {
                throw new IOException($"gateway.listeners '{listener.Name}': cannot load its certificate: {ex.Message}", ex);
            }
        }

        bool quic = System.Net.Quic.QuicListener.IsSupported;
        foreach (GatewayListenerConfig listener in gateway.Listeners.Where(l => l.Http3 && !quic))
        {
            GatewayLog.Http3Unavailable(logger, listener.Name);
        }

        var resets = new ResetFloodGuard(gateway.Limits.MaxClientResetsPerSecond);
        WebApplicationBuilder builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Services.AddLogging();
        builder.Services.AddSingleton<ILoggerFactory>(new GatewayHostLoggers(loggers));
        builder.Services.AddSingleton<IHostLifetime, Hosting.EmbeddedServerLifetime>();
        builder.Services.AddHttpForwarder();
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            ApplyLimits(kestrel.Limits, gateway.Limits);
            // Listeners that share an address and port (by host name) are one socket; they share its protocol.
            foreach (IReadOnlyList<GatewayListenerConfig> sharing in ListenerTable.Sockets(gateway.Listeners))
            {
                GatewayListenerConfig listener = sharing[0];
                kestrel.Listen(IPAddress.Parse(listener.Address), listener.Port, options =>
                {
                    options.Use(resets.Middleware);
                    switch (listener.Protocol)
                    {
                        case GatewayProtocol.Http:
                            options.Protocols = HttpProtocols.Http1;
                            break;
                        case GatewayProtocol.H2c:
                            options.Protocols = HttpProtocols.Http2;
                            break;
                        case GatewayProtocol.Https:
                            options.Protocols = listener.Http3 && quic ? HttpProtocols.Http1AndHttp2AndHttp3 : HttpProtocols.Http1AndHttp2;
                            ListenerCertificates chosen = certificates[listener.Name];
                            var https = new HttpsConnectionAdapterOptions
                            {
                                SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                                ServerCertificateSelector = (_, name) => chosen.Select(name),
                                HandshakeTimeout = gateway.Limits.RequestHeadersTimeout,
                            };
                            if (clientRoots.TryGetValue(listener.Name, out X509Certificate2Collection? roots))
                            {
                                https.ClientCertificateMode = listener.Tls!.ClientValidation!.Optional ? ClientCertificateMode.AllowCertificate : ClientCertificateMode.RequireCertificate;
                                https.ClientCertificateValidation = (certificate, _, _) => ClientCertificates.Chains(certificate, roots);
                            }

                            options.UseHttps(https);
                            break;
                    }
                });
            }
        });
        if (certificates.Count > 0)
        {
            builder.WebHost.UseKestrelHttpsConfiguration();
        }

        if (quic && gateway.Listeners.Any(l => l.Http3))
        {
            builder.WebHost.UseQuic();
        }

        _app = builder.Build();
        foreach (JwtProviderConfig provider in gateway.JwtProviders)
        {
            var authenticator = new JwtAuthenticator(provider, logger);
            _authenticators[provider.Name] = authenticator;
            await authenticator.StartAsync(cancellationToken);
        }

        _pools = new BackendPools(registry, new BackendClients(mesh, config.Tunnel.ConnectTimeout, logger), gateway.BackendPolicies, metrics, logger);
        var handler = new GatewayRequestHandler(routes, _pools, _app.Services.GetRequiredService<IHttpForwarder>(), new RequestMirror(_pools, metrics, logger), metrics,
            new ListenerTable(gateway.Listeners), _authenticators, new ConsumerAuthenticator(consumers), plans, mesh.Identity.Uri, resets, logger, gateway.AccessLog ? loggers.CreateLogger(Proxy.FlowRecorder.AccessLogCategory) : null);
        _app.Run(handler.HandleAsync);
        try
        {
            await _app.StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException)
        {
            throw new IOException($"cannot serve the gateway's listeners ({string.Join(", ", gateway.Listeners.Select(l => $"{l.Name} {l.Address}:{l.Port}"))}): {ex.Message}", ex);
        }

        if (certificates.Count > 0)
        {
            _certificateWatch = WatchCertificatesAsync(certificates, logger, _stopping.Token);
        }

        GatewayLog.Serving(logger, string.Join(", ", gateway.Listeners.Select(l => $"{l.Name} {l.Protocol.ToString().ToUpperInvariant()} {l.Address}:{l.Port}{(l.Hostname.Length > 0 ? " for " + l.Hostname : "")}")),
            routes.Count, mesh.Identity.Uri);
    }

    /// <summary>
    /// Nothing yet: the host stops its services in reverse order, so this one would stop before the agent drains.
    /// The listeners close when the host is disposed.
    /// </summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _certificateWatch.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_app is not null)
        {
            using var deadline = new CancellationTokenSource(config.DrainTimeout);
            await _app.StopAsync(deadline.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await _app.DisposeAsync();
            _app = null;
        }

        if (_pools is not null)
        {
            await _pools.DisposeAsync();
        }

        foreach (JwtAuthenticator authenticator in _authenticators.Values)
        {
            authenticator.Dispose();
        }

        _stopping.Dispose();
    }

    /// <summary>Kestrel's limits from <c>gateway.limits</c>: it sets no connection limit of its own.</summary>
    internal static void ApplyLimits(KestrelServerLimits limits, GatewayLimitsConfig config)
    {
        limits.MaxConcurrentConnections = config.MaxConnections;
        limits.MaxConcurrentUpgradedConnections = config.MaxConnections;
        limits.MaxRequestHeadersTotalSize = config.MaxRequestHeadersBytes;
        limits.MaxRequestLineSize = Math.Min(config.MaxRequestHeadersBytes, limits.MaxRequestLineSize * 2);
        limits.MaxRequestHeaderCount = config.MaxRequestHeaderCount;
        limits.MaxRequestBodySize = config.MaxRequestBodyBytes == 0 ? null : config.MaxRequestBodyBytes;
        limits.RequestHeadersTimeout = config.RequestHeadersTimeout;
        limits.KeepAliveTimeout = config.KeepAliveTimeout;
        limits.MinRequestBodyDataRate = config.MinRequestBodyBytesPerSecond == 0 ? null : new MinDataRate(config.MinRequestBodyBytesPerSecond, TimeSpan.FromSeconds(5));
        limits.Http2.MaxStreamsPerConnection = config.Http2MaxStreams;
        limits.Http2.MaxRequestHeaderFieldSize = Math.Max(limits.Http2.MaxRequestHeaderFieldSize, Math.Min(config.MaxRequestHeadersBytes, 16 * 1024 * 1024));
    }

    private static async Task WatchCertificatesAsync(Dictionary<string, ListenerCertificates> certificates, ILogger logger, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(CertificatePoll);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                foreach ((string listener, ListenerCertificates files) in certificates)
                {
                    switch (files.ReloadIfChanged())
                    {
                        case null:
                            break;
                        case "":
                            GatewayLog.CertificateReloaded(logger, listener);
                            break;
                        case var problem:
                            GatewayLog.CertificateNotReloaded(logger, listener, problem);
                            break;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }
}
