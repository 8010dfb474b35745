using System.Diagnostics;
using NodeMesh.Contracts;

namespace NodeMesh.Telemetry;

/// <summary>
/// A span per flow on each agent it crosses. The sending agent's span context travels in the flow header's
/// traceparent, so the receiving agent's span is its child: one trace per connection across nodes. Nothing is
/// recorded unless a tracer provider listens (OTLP export configured).
/// </summary>
internal static class FlowTracing
{
    public const string SourceName = "NodeMesh";

    private static readonly ActivitySource Source = new(SourceName);

    /// <param name="parent">The W3C traceparent the peer agent sent, for a flow arriving over the tunnel.</param>
    public static Activity? Start(string direction, string? parent)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        // A flow is never the child of whatever the agent was doing when it accepted it: only of the peer's span.
        Activity.Current = null;
        ActivityContext context = parent is not null && ActivityContext.TryParse(parent, null, isRemote: true, out ActivityContext remote) ? remote : default;
        return Source.StartActivity(direction == "inbound" ? "flow inbound" : "flow outbound",
            direction == "inbound" ? ActivityKind.Server : ActivityKind.Client, context);
    }

    /// <summary>The W3C traceparent to send with the flow, when it is traced.</summary>
    public static string? TraceParent(Activity? activity) => activity?.Id is { Length: W3CTraceParentLength } id ? id : null;

    /// <summary>"00-" trace id "-" span id "-" flags: the only form the flow header carries (hierarchical ids are not sent).</summary>
    private const int W3CTraceParentLength = 55;

    /// <summary>Ends the span with what the flow's record says.</summary>
    public static void Stop(Activity? activity, FlowRecord record)
    {
        if (activity is null)
        {
            return;
        }

        if (activity.IsAllDataRequested)
        {
            activity.SetTag("nodemesh.direction", record.Direction);
            activity.SetTag("nodemesh.path", record.Path);
            activity.SetTag("client.address", record.Source);
            activity.SetTag("server.address", record.Destination);
            activity.SetTag("nodemesh.source_workload", record.SourceWorkload);
            activity.SetTag("nodemesh.source_principal", record.SourceIdentity);
            activity.SetTag("nodemesh.destination_workload", record.DestinationWorkload);
            activity.SetTag("nodemesh.destination_principal", record.DestinationIdentity);
            activity.SetTag("nodemesh.bytes_sent", record.BytesSent);
            activity.SetTag("nodemesh.bytes_received", record.BytesReceived);
            activity.SetTag("nodemesh.outcome", record.Outcome.ToString());
            activity.SetTag("nodemesh.response_flags", ResponseFlags.Of(record.Outcome));
            activity.SetStatus(record.Outcome == FlowOutcome.Ok ? ActivityStatusCode.Ok : ActivityStatusCode.Error, record.Outcome == FlowOutcome.Ok ? null : record.Result);
        }

        activity.Stop();
    }
}
