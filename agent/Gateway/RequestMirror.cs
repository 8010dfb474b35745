using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Gateway;

/// <summary>
/// RequestMirror filters: a copy of a share of a rule's requests (those without a body) sent to another backend,
/// its answer read and dropped, never waited for by the client. At most <see cref="MaxInFlight"/> copies are out at
/// once; beyond that a copy is dropped (counted), so a slow mirror cannot pile up work in the gateway.
/// </summary>
internal sealed class RequestMirror(BackendPools pools, GatewayMetrics metrics, ILogger logger)
{
    public const int MaxInFlight = 256;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "TE", "Trailer", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Host",
    };

    private int _inFlight;

    public void Send(HttpContext context, RulePlan plan, string path, string host)
    {
        foreach (RequestMirrorConfig mirror in plan.Mirrors)
        {
            if (mirror.Percent < 100 && Random.Shared.Next(100) >= mirror.Percent)
            {
                continue;
            }

            BackendPool pool = pools.For(BackendTarget.Of(mirror.BackendRef));
            BackendEndpoint? endpoint = pool.Choose(context.Request);
            if (endpoint is null)
            {
                metrics.Mirrored(plan.Display, "dropped");
                continue;
            }

            if (Interlocked.Increment(ref _inFlight) > MaxInFlight)
            {
                Interlocked.Decrement(ref _inFlight);
                metrics.Mirrored(plan.Display, "dropped");
                continue;
            }

            // Everything the copy needs is taken now: the request's objects are reused once the handler returns.
            var copy = new HttpRequestMessage(new HttpMethod(context.Request.Method), endpoint.Prefix + path + context.Request.QueryString.Value)
            {
                Version = pool.HttpVersion,
                VersionPolicy = pool.HttpVersionPolicy,
            };
            foreach ((string name, Microsoft.Extensions.Primitives.StringValues values) in context.Request.Headers)
            {
                if (!HopByHop.Contains(name) && !name.StartsWith(':'))
                {
                    copy.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
                }
            }

            copy.Headers.Host = host;
            _ = SendAsync(copy, endpoint, pool.Display, plan.Display);
        }
    }

    private async Task SendAsync(HttpRequestMessage copy, BackendEndpoint endpoint, string backend, string route)
    {
        endpoint.Started();
        try
        {
            using var deadline = new CancellationTokenSource(Timeout);
            using HttpResponseMessage response = await endpoint.Invoker.SendAsync(copy, deadline.Token);
            await response.Content.CopyToAsync(Stream.Null, deadline.Token);
            metrics.Mirrored(route, "sent");
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            metrics.Mirrored(route, "failed");
            GatewayLog.MirrorFailed(logger, route, backend, ex.Message);
        }
        finally
        {
            endpoint.Finished();
            copy.Dispose();
            Interlocked.Decrement(ref _inFlight);
        }
    }
}
