using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using NodeMesh.Telemetry;

namespace NodeMesh.Gateway;

/// <summary>
/// A span per request through the gateway, the child of the client's W3C traceparent when it sent one. The
/// backend gets this span as its parent (the traceparent header is replaced), and a mesh flow the request opens
/// carries it in its flow header, so the receiving agent's flow span is its child. Nothing is recorded unless a
/// tracer provider listens (OTLP export configured).
/// </summary>
internal static class GatewayTracing
{
    private static readonly ActivitySource Source = new(FlowTracing.SourceName);

    public static Activity? Start(HttpContext context)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        Activity.Current = null;
        string? parent = context.Request.Headers.TraceParent;
        ActivityContext remote = parent is not null && ActivityContext.TryParse(parent, context.Request.Headers.TraceState, isRemote: true, out ActivityContext parsed) ? parsed : default;
        Activity? activity = Source.StartActivity("gateway " + context.Request.Method, ActivityKind.Server, remote);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("http.request.method", context.Request.Method);
            activity.SetTag("url.path", context.Request.Path.Value);
            activity.SetTag("server.address", context.Request.Host.Host);
            activity.SetTag("network.protocol.version", context.Request.Protocol);
            activity.SetTag("client.address", context.Connection.RemoteIpAddress?.ToString());
        }

        return activity;
    }

    public static void Stop(Activity? activity, GatewayRequestRecord record)
    {
        if (activity is null)
        {
            return;
        }

        if (activity.IsAllDataRequested)
        {
            activity.SetTag("http.route", record.Route);
            activity.SetTag("http.response.status_code", record.Status);
            activity.SetTag("nodemesh.upstream", record.Upstream);
            activity.SetTag("nodemesh.response_flags", record.Flags);
            activity.SetStatus(record.Status >= 500 ? ActivityStatusCode.Error : ActivityStatusCode.Unset);
        }

        activity.Stop();
    }
}
