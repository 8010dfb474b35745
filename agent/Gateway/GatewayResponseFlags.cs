using Yarp.ReverseProxy.Forwarder;

namespace NodeMesh.Gateway;

/// <summary>The <c>response_flags</c> of a request, in Envoy's words (what Istio's dashboards and operators read).</summary>
internal static class GatewayResponseFlags
{
    public const string None = "-";

    /// <summary>No route matched (Envoy's NR).</summary>
    public const string NoRoute = "NR";

    /// <summary>The rule has no backend, or the backend no endpoint, that may take a request (Envoy's UH: no healthy upstream).</summary>
    public const string NoBackend = "UH";

    /// <summary>The backend's limits were full or its circuit open (Envoy's UO: upstream overflow).</summary>
    public const string Overflow = "UO";

    /// <summary>The per-attempt or whole-request timeout ran out before the response headers (UT).</summary>
    public const string Timeout = "UT";

    /// <summary>The retries were used up and the last attempt failed (URX).</summary>
    public const string RetriesExhausted = "URX";

    /// <summary>Refused by the rule's rate limit (Envoy's RL).</summary>
    public const string RateLimited = "RL";

    /// <summary>The client went away or stopped sending (Envoy's DC: downstream connection termination).</summary>
    public const string ClientGone = "DC";

    /// <summary>Answered by the gateway itself (a redirect): Envoy has no flag for it, so none.</summary>
    public const string Direct = None;

    public static string Of(ForwarderError error) => error switch
    {
        ForwarderError.None => None,

        // The backend could not be connected or sent no response headers (UF: upstream connection failure).
        ForwarderError.Request or ForwarderError.ResponseHeaders or ForwarderError.NoAvailableDestinations => "UF",
        ForwarderError.RequestTimedOut => Timeout,

        ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled or ForwarderError.RequestBodyClient
            or ForwarderError.ResponseBodyCanceled or ForwarderError.ResponseBodyClient
            or ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient
            or ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient => ClientGone,

        // The backend's side broke off mid-way (UC: upstream connection termination).
        _ => "UC",
    };
}
