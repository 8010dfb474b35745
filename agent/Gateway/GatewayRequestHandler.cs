using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>
/// One request through the gateway: the rule that takes it (404 when none does), its redirect answered here, or a
/// backend chosen by weight and the request forwarded there with the rule's rewrites and header changes.
/// </summary>
internal sealed class GatewayRequestHandler(GatewayRoutes routes, BackendInvokers invokers, IHttpForwarder forwarder, IReadOnlyDictionary<int, string> listenerByPort, ILogger logger)
{
    private static readonly ForwarderRequestConfig Forwarding = new() { ActivityTimeout = TimeSpan.FromSeconds(100) };

    public async Task HandleAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        string listener = listenerByPort.GetValueOrDefault(context.Connection.LocalPort, "");
        string host = request.Host.Host;
        string path = request.Path.HasValue ? request.Path.Value! : "/";
        RulePlan? plan = routes.Match(listener, host, path, request.Method, request.Headers, request.Query, out HttpRouteMatchConfig? match);
        if (plan is null)
        {
            await AnswerAsync(context, StatusCodes.Status404NotFound, "no route matches this request");
            return;
        }

        if (plan.Redirect is { } redirect)
        {
            string target = redirect.Path is { } modifier ? RequestRewrite.Path(path, modifier, match!) : path;
            context.Response.StatusCode = redirect.StatusCode;
            context.Response.Headers.Location = RequestRewrite.RedirectLocation(redirect, request.Scheme, host, request.Host.Port, target, request.QueryString.Value ?? "");
            return;
        }

        // The Gateway API's answer for a rule without a usable backend.
        if (plan.TotalWeight == 0 || plan.Choose(Random.Shared.Next(plan.TotalWeight)) is not { } backend)
        {
            await AnswerAsync(context, StatusCodes.Status500InternalServerError, $"route {plan.Display} has no backend");
            return;
        }

        string forwardPath = plan.Rewrite?.Path is { } rewrite ? RequestRewrite.Path(path, rewrite, match!) : path;
        string forwardHost = plan.Rewrite is { Hostname.Length: > 0 } hostRewrite ? hostRewrite.Hostname : request.Host.Value ?? "";
        ForwarderError error = await forwarder.SendAsync(context, backend.Prefix, invokers.For(backend), Forwarding, new ForwardTransformer(plan, forwardPath, forwardHost));
        if (error != ForwarderError.None)
        {
            // YARP answered 502 or 504 if the response had not started; else it aborted the response.
            GatewayLog.ForwardFailed(logger, plan.Display, backend.Display, error.ToString(), context.Features.Get<IForwarderErrorFeature>()?.Exception?.Message ?? "");
        }
    }

    private static Task AnswerAsync(HttpContext context, int status, string reason)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(reason + "\n", context.RequestAborted);
    }
}
