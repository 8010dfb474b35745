namespace NodeMesh.Gateway;

// The edge listener's configuration (the file's "gateway" section). Routes have the shape of the Kubernetes
// Gateway API's HTTPRoute (v1.4), field for field where a field applies outside a cluster: an operator who
// knows HTTPRoute reads these without a manual. Like the rest of the configuration these are read-only
// snapshots once loaded; a reload builds new ones.

/// <summary>The gateway: listeners for traffic from outside, and the routes to the mesh's services and other backends.</summary>
internal sealed record GatewayConfig
{
    /// <summary>The identity the gateway's requests carry into the mesh; empty: <c>spiffe://TRUST_DOMAIN/ns/nodemesh-system/sa/gateway</c>.</summary>
    public string Identity { get; set; } = "";

    /// <summary>None: no gateway (the agent opens no edge port).</summary>
    public IReadOnlyList<GatewayListenerConfig> Listeners { get; set; } = [];

    public GatewayLimitsConfig Limits { get; set; } = new();

    public IReadOnlyList<HttpRouteConfig> HttpRoutes { get; set; } = [];

    /// <summary>gRPC routes (Gateway API GRPCRoute), served as HTTP routes on the gRPC paths.</summary>
    public IReadOnlyList<GrpcRouteConfig> GrpcRoutes { get; set; } = [];

    /// <summary>How each backend's endpoints are chosen, checked and protected (Envoy Gateway's BackendTrafficPolicy, per backend).</summary>
    public IReadOnlyList<BackendPolicyConfig> BackendPolicies { get; set; } = [];

    /// <summary>Issuers whose JSON Web Tokens rules may require (a rule's <c>jwt</c> names one).</summary>
    public IReadOnlyList<JwtProviderConfig> JwtProviders { get; set; } = [];

    /// <summary>What consumers may be given: per-consumer rate limits and a daily quota (a consumer names one).</summary>
    public IReadOnlyList<PlanConfig> Plans { get; set; } = [];

    /// <summary>A line per request (category NodeMesh.AccessLog): on by default, as gateways' access logs are.</summary>
    public bool AccessLog { get; set; } = true;

    /// <summary>The identity in force: <see cref="Identity"/>, or the default in <paramref name="trustDomain"/>.</summary>
    public string IdentityIn(string trustDomain) => Identity.Length > 0 ? Identity : $"spiffe://{trustDomain}/ns/nodemesh-system/sa/gateway";
}

internal enum GatewayProtocol
{
    /// <summary>Cleartext HTTP/1.1.</summary>
    Http,

    /// <summary>
    /// Cleartext HTTP/2 with prior knowledge (gRPC without TLS). A port of its own: Kestrel cannot tell the two
    /// apart on one cleartext port (no ALPN), as nginx's <c>listen ... http2</c> cannot either.
    /// </summary>
    H2c,

    /// <summary>TLS: HTTP/1.1 and HTTP/2 chosen by ALPN.</summary>
    Https,
}

/// <summary>One edge port (a Gateway API listener).</summary>
internal sealed record GatewayListenerConfig
{
    /// <summary>The name routes attach to (their <c>listeners</c>, Gateway API's parentRefs[].sectionName).</summary>
    public string Name { get; set; } = "";

    /// <summary>The IPv4 or IPv6 address listened on; 0.0.0.0: every address of the node.</summary>
    public string Address { get; set; } = "0.0.0.0";

    public int Port { get; set; }

    /// <summary>
    /// The host names the listener takes (exact or <c>*.example.com</c>); empty: any. Http and H2c listeners may share
    /// an address and port when their host names differ; a request goes to the most specific one that names its host.
    /// </summary>
    public string Hostname { get; set; } = "";

    public GatewayProtocol Protocol { get; set; } = GatewayProtocol.Http;

    /// <summary>For <see cref="GatewayProtocol.Https"/>: the certificates, chosen by SNI.</summary>
    public ListenerTlsConfig? Tls { get; set; }

    /// <summary>
    /// For <see cref="GatewayProtocol.Https"/>: HTTP/3 on the same port (UDP) besides HTTP/1.1 and HTTP/2, where QUIC is
    /// available (libmsquic); without it the agent says so at start and serves the other two.
    /// </summary>
    public bool Http3 { get; set; }
}

/// <summary>A listener's TLS (Gateway API's listeners[].tls, mode Terminate).</summary>
internal sealed record ListenerTlsConfig
{
    /// <summary>PEM files; each serves the names its certificate holds, the first also clients that send no SNI or an unknown name.</summary>
    public IReadOnlyList<CertificateFilesConfig> Certificates { get; set; } = [];

    /// <summary>Client certificates checked against a CA (Gateway API's frontendValidation); null: none asked for.</summary>
    public ClientValidationConfig? ClientValidation { get; set; }
}

/// <summary>Mutual TLS at the edge: clients present a certificate that chains to the CA file.</summary>
internal sealed record ClientValidationConfig
{
    /// <summary>PEM file of the CA certificates a client's certificate must chain to.</summary>
    public string CaFile { get; set; } = "";

    /// <summary>True: a client without a certificate is still served (one with a bad certificate never is).</summary>
    public bool Optional { get; set; }
}

internal sealed record CertificateFilesConfig
{
    public string CertFile { get; set; } = "";

    public string KeyFile { get; set; } = "";
}

/// <summary>Limits on what a client may ask of the gateway; Kestrel's defaults leave connections unlimited, these do not.</summary>
internal sealed record GatewayLimitsConfig
{
    /// <summary>Open client connections per listener; beyond it new connections are closed at once.</summary>
    public long MaxConnections { get; set; } = 10_000;

    /// <summary>The request line and headers together, in bytes (431 beyond).</summary>
    public int MaxRequestHeadersBytes { get; set; } = 32 * 1024;

    public int MaxRequestHeaderCount { get; set; } = 100;

    /// <summary>A request body, in bytes (413 beyond); 0: no limit.</summary>
    public long MaxRequestBodyBytes { get; set; } = 10 * 1024 * 1024;

    /// <summary>The time a client has to send the request headers (slowloris).</summary>
    public TimeSpan RequestHeadersTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>An idle keep-alive connection is closed after this.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = TimeSpan.FromSeconds(130);

    /// <summary>A request body sent slower than this (bytes a second, after a 5 s grace) is cut; 0: no minimum.</summary>
    public int MinRequestBodyBytesPerSecond { get; set; } = 240;

    /// <summary>Concurrent HTTP/2 streams per connection.</summary>
    public int Http2MaxStreams { get; set; } = 100;

    /// <summary>
    /// Requests a connection may cancel before their response begins, a second (twice that at once): beyond it the
    /// connection is closed (HTTP/2 rapid reset).
    /// </summary>
    public int MaxClientResetsPerSecond { get; set; } = 100;
}

/// <summary>An HTTPRoute: hostnames and rules.</summary>
internal sealed record HttpRouteConfig
{
    public string Name { get; set; } = "";

    /// <summary>Host names the route serves: exact (<c>shop.example.com</c>) or a leading wildcard label (<c>*.example.com</c>); none: every host.</summary>
    public IReadOnlyList<string> Hostnames { get; set; } = [];

    /// <summary>The listeners (by name) the route attaches to; none: all of them.</summary>
    public IReadOnlyList<string> Listeners { get; set; } = [];

    public IReadOnlyList<HttpRouteRuleConfig> Rules { get; set; } = [];
}

internal sealed record HttpRouteRuleConfig
{
    /// <summary>Optional; shown in logs, metrics and the access log.</summary>
    public string Name { get; set; } = "";

    /// <summary>Any one of them selects the rule; none: every request (a path prefix of "/").</summary>
    public IReadOnlyList<HttpRouteMatchConfig> Matches { get; set; } = [];

    public IReadOnlyList<HttpRouteFilterConfig> Filters { get; set; } = [];

    /// <summary>Chosen by weight for each request; none (and no redirect): 500, as the Gateway API says.</summary>
    public IReadOnlyList<BackendRefConfig> BackendRefs { get; set; } = [];

    public HttpRouteTimeoutsConfig Timeouts { get; set; } = new();

    /// <summary>Retries of idempotent requests; null: none.</summary>
    public HttpRouteRetryConfig? Retry { get; set; }

    /// <summary>Local rate limits on the rule's requests (each node's gateway counts its own); a request must pass all of them.</summary>
    public IReadOnlyList<RateLimitConfig> RateLimits { get; set; } = [];

    /// <summary>A bearer token the rule requires; null: none.</summary>
    public RuleJwtConfig? Jwt { get; set; }

    /// <summary>A known API consumer the rule requires (by API key or client certificate); null: none.</summary>
    public RuleConsumersConfig? Consumers { get; set; }
}

/// <summary>
/// A rule's consumer requirement: the request names an active consumer, by an API key (a header, or a query
/// parameter) or by the client certificate the listener validated. No credential or an unknown one: 401; a
/// disabled or pending consumer, a revoked or expired key, or one not allowed here: 403.
/// </summary>
internal sealed record RuleConsumersConfig
{
    /// <summary>The header that carries the key; empty: keys are not read from a header.</summary>
    public string ApiKeyHeader { get; set; } = "x-api-key";

    /// <summary>A query parameter that carries the key (removed before the request is forwarded); empty: none.</summary>
    public string ApiKeyQueryParameter { get; set; } = "";

    /// <summary>A client certificate mapped to a consumer identifies it (on an HTTPS listener with client validation).</summary>
    public bool ClientCertificates { get; set; }

    /// <summary>Only these consumers (by name); empty: every active consumer.</summary>
    public IReadOnlyList<string> Allowed { get; set; } = [];

    /// <summary>The header that tells the backend the consumer's name (a client's own is dropped); empty: not sent.</summary>
    public string ForwardHeader { get; set; } = "x-consumer";
}

/// <summary>A plan consumers are given: its limits hold per consumer, across every rule that identifies consumers.</summary>
internal sealed record PlanConfig
{
    public string Name { get; set; } = "";

    /// <summary>Each consumer of the plan has its own of each (the key is the consumer).</summary>
    public IReadOnlyList<PlanRateLimitConfig> RateLimits { get; set; } = [];

    /// <summary>Requests per consumer per UTC day on this node's gateway; 0: no quota.</summary>
    public long DailyQuota { get; set; }

    /// <summary>The developer portal lets anyone sign up for this plan and get a key at once; otherwise sign-ups await approval.</summary>
    public bool SelfService { get; set; }
}

internal sealed record PlanRateLimitConfig
{
    public RateLimitAlgorithm Algorithm { get; set; } = RateLimitAlgorithm.TokenBucket;

    public int Requests { get; set; }

    public TimeSpan Window { get; set; } = TimeSpan.FromSeconds(1);

    public int Burst { get; set; }

    /// <summary>As a rule's limit keyed by the consumer.</summary>
    public RateLimitConfig ToRateLimit() => new() { Key = RateLimitKey.Consumer, Algorithm = Algorithm, Requests = Requests, Window = Window, Burst = Burst };
}

/// <summary>An issuer of JSON Web Tokens and where its signing keys are (a JWKS).</summary>
internal sealed record JwtProviderConfig
{
    public string Name { get; set; } = "";

    /// <summary>The <c>iss</c> a token must carry.</summary>
    public string Issuer { get; set; } = "";

    /// <summary>An <c>aud</c> a token must carry, one of these; empty: the audience is not checked.</summary>
    public IReadOnlyList<string> Audiences { get; set; } = [];

    /// <summary>A JWKS file, read again when it changes (a key rotated in place is taken up without a restart).</summary>
    public string JwksFile { get; set; } = "";

    /// <summary>A JWKS URL, fetched at start, every <see cref="JwksRefresh"/>, and (at most every 30 s) for a key id it lacks.</summary>
    public string JwksUri { get; set; } = "";

    public TimeSpan JwksRefresh { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Leeway for <c>exp</c> and <c>nbf</c> against this node's clock.</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Claims of a valid token sent to the backend as headers (a client's own headers of those names are dropped).</summary>
    public IReadOnlyList<ClaimHeaderConfig> ForwardClaims { get; set; } = [];
}

internal sealed record ClaimHeaderConfig
{
    public string Claim { get; set; } = "";

    public string Header { get; set; } = "";
}

/// <summary>A rule's token requirement: valid for the provider, with every scope and one value of every claim named here.</summary>
internal sealed record RuleJwtConfig
{
    public string Provider { get; set; } = "";

    /// <summary>Scopes the token must hold (its <c>scope</c> claim, space-separated, or <c>scp</c>); missing ones: 403.</summary>
    public IReadOnlyList<string> RequiredScopes { get; set; } = [];

    public IReadOnlyList<RequiredClaimConfig> RequiredClaims { get; set; } = [];
}

internal sealed record RequiredClaimConfig
{
    public string Name { get; set; } = "";

    /// <summary>The claim (or one of its values, when it is a list) must be one of these.</summary>
    public IReadOnlyList<string> Values { get; set; } = [];
}

internal enum RateLimitAlgorithm
{
    /// <summary>A bucket of <c>burst</c> tokens refilled by <c>requests</c> every <c>window</c>: bursts allowed, the average held.</summary>
    TokenBucket,

    /// <summary>At most <c>requests</c> in any <c>window</c>, counted in ten segments (no burst at a window's edge).</summary>
    SlidingWindow,
}

internal enum RateLimitKey
{
    /// <summary>All of the rule's requests count together.</summary>
    Route,

    /// <summary>Each client address has its own limit.</summary>
    ClientAddress,

    /// <summary>Each consumer has its own limit (the rule must identify consumers).</summary>
    Consumer,
}

internal sealed record RateLimitConfig
{
    public RateLimitKey Key { get; set; } = RateLimitKey.ClientAddress;

    public RateLimitAlgorithm Algorithm { get; set; } = RateLimitAlgorithm.TokenBucket;

    /// <summary>Requests allowed per <see cref="Window"/>.</summary>
    public int Requests { get; set; }

    public TimeSpan Window { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>TokenBucket: the most requests at once (the bucket's size); 0: <see cref="Requests"/>.</summary>
    public int Burst { get; set; }
}

/// <summary>All of its conditions must hold.</summary>
internal sealed record HttpRouteMatchConfig
{
    /// <summary>Null: a path prefix of "/".</summary>
    public HttpPathMatchConfig? Path { get; set; }

    public IReadOnlyList<HttpValueMatchConfig> Headers { get; set; } = [];

    public IReadOnlyList<HttpValueMatchConfig> QueryParams { get; set; } = [];

    /// <summary>An HTTP method (GET, POST, …); empty: any.</summary>
    public string Method { get; set; } = "";
}

internal enum PathMatchType
{
    /// <summary>The whole path, case-sensitive.</summary>
    Exact,

    /// <summary>Path segments: /api matches /api and /api/x, not /apix.</summary>
    PathPrefix,

    /// <summary>A .NET regular expression matched against the whole path.</summary>
    RegularExpression,
}

internal sealed record HttpPathMatchConfig
{
    public PathMatchType Type { get; set; } = PathMatchType.PathPrefix;

    public string Value { get; set; } = "/";
}

internal enum ValueMatchType
{
    Exact,
    RegularExpression,
}

/// <summary>A header (name case-insensitive) or query parameter (name case-sensitive) and its value.</summary>
internal sealed record HttpValueMatchConfig
{
    public ValueMatchType Type { get; set; } = ValueMatchType.Exact;

    public string Name { get; set; } = "";

    public string Value { get; set; } = "";
}

internal enum HttpRouteFilterType
{
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    UrlRewrite,
    RequestMirror,
}

/// <summary>One filter: its type, and the field of that type's name set (as in the Gateway API).</summary>
internal sealed record HttpRouteFilterConfig
{
    public HttpRouteFilterType Type { get; set; }

    public HeaderModifierConfig? RequestHeaderModifier { get; set; }

    public HeaderModifierConfig? ResponseHeaderModifier { get; set; }

    public RequestRedirectConfig? RequestRedirect { get; set; }

    public UrlRewriteConfig? UrlRewrite { get; set; }

    public RequestMirrorConfig? RequestMirror { get; set; }
}

internal sealed record HeaderModifierConfig
{
    /// <summary>Replace the header (or add it).</summary>
    public IReadOnlyList<HttpHeaderConfig> Set { get; set; } = [];

    /// <summary>Add a value to the header.</summary>
    public IReadOnlyList<HttpHeaderConfig> Add { get; set; } = [];

    public IReadOnlyList<string> Remove { get; set; } = [];
}

internal sealed record HttpHeaderConfig
{
    public string Name { get; set; } = "";

    public string Value { get; set; } = "";
}

internal enum PathModifierType
{
    ReplaceFullPath,
    ReplacePrefixMatch,
}

/// <summary>A path rewrite: the whole path, or the part a PathPrefix match matched.</summary>
internal sealed record HttpPathModifierConfig
{
    public PathModifierType Type { get; set; }

    public string ReplaceFullPath { get; set; } = "";

    public string ReplacePrefixMatch { get; set; } = "";
}

internal sealed record RequestRedirectConfig
{
    /// <summary>http or https; empty: the request's.</summary>
    public string Scheme { get; set; } = "";

    /// <summary>Empty: the request's host.</summary>
    public string Hostname { get; set; } = "";

    public HttpPathModifierConfig? Path { get; set; }

    /// <summary>0: the scheme's well-known port when the scheme changes, else the request's.</summary>
    public int Port { get; set; }

    /// <summary>301, 302 (default), 303, 307 or 308.</summary>
    public int StatusCode { get; set; } = 302;
}

internal sealed record UrlRewriteConfig
{
    /// <summary>The Host the backend sees; empty: unchanged.</summary>
    public string Hostname { get; set; } = "";

    public HttpPathModifierConfig? Path { get; set; }
}

/// <summary>A copy of the request to another backend, its answer discarded.</summary>
internal sealed record RequestMirrorConfig
{
    public BackendRefConfig BackendRef { get; set; } = new();

    /// <summary>Share of the requests mirrored, 0-100.</summary>
    public int Percent { get; set; } = 100;
}

/// <summary>
/// A backend: a mesh service by <see cref="Name"/> and <see cref="Port"/> (reached through the mesh's tunnels under
/// the gateway's identity), or a plain <see cref="Address"/> outside the mesh (host:port).
/// </summary>
internal sealed record BackendRefConfig
{
    /// <summary>A service of the registry.</summary>
    public string Name { get; set; } = "";

    /// <summary>The service's port.</summary>
    public int Port { get; set; }

    /// <summary>host:port of a backend outside the mesh, instead of <see cref="Name"/>.</summary>
    public string Address { get; set; } = "";

    /// <summary>The share of requests, relative to the rule's other backends; 0: none (kept for a later shift).</summary>
    public int Weight { get; set; } = 1;

    /// <summary>RequestHeaderModifier and ResponseHeaderModifier applied, after the rule's, only to requests sent to this backend.</summary>
    public IReadOnlyList<HttpRouteFilterConfig> Filters { get; set; } = [];
}

internal sealed record HttpRouteTimeoutsConfig
{
    /// <summary>The whole request, retries included, until the response headers; 0: none.</summary>
    public TimeSpan Request { get; set; }

    /// <summary>Each attempt on a backend; 0: none.</summary>
    public TimeSpan BackendRequest { get; set; }
}

/// <summary>Gateway API's HTTPRoute retry: only for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) whose body was not sent.</summary>
internal sealed record HttpRouteRetryConfig
{
    /// <summary>Attempts after the first.</summary>
    public int Attempts { get; set; } = 2;

    /// <summary>Response codes that are retried; besides these, a backend that cannot be reached.</summary>
    public IReadOnlyList<int> Codes { get; set; } = [502, 503, 504];

    /// <summary>The wait before a retry, doubled for each further one.</summary>
    public TimeSpan Backoff { get; set; } = TimeSpan.FromMilliseconds(25);

    /// <summary>Retries in flight may be at most this share (percent) of the rule's requests in flight…</summary>
    public int BudgetPercent { get; set; } = 20;

    /// <summary>…and never fewer than this many (Envoy's retry budget and its defaults).</summary>
    public int MinRetryConcurrency { get; set; } = 3;
}

/// <summary>
/// One backend's traffic policy: load balancing over its endpoints, active health checks, passive outlier
/// ejection, circuit breaking, and (for a plain backend) TLS to it. A backend without a policy gets the defaults:
/// power of two choices, no health checks, ejection after 5 consecutive failures, 1024 requests at once.
/// </summary>
internal sealed record BackendPolicyConfig
{
    /// <summary>The backend as the rules' backendRefs name it: a mesh service's name, or a plain backend's host:port.</summary>
    public string Backend { get; set; } = "";

    public LoadBalancerConfig LoadBalancer { get; set; } = new();

    /// <summary>What the backend speaks (Kubernetes' appProtocol): HTTP/1.1, or HTTP/2 without TLS (gRPC backends).</summary>
    public BackendProtocol Protocol { get; set; } = BackendProtocol.Http1;

    /// <summary>Null: no active checks (endpoints are judged by their answers alone).</summary>
    public HealthCheckConfig? HealthCheck { get; set; }

    public OutlierDetectionConfig OutlierDetection { get; set; } = new();

    public CircuitBreakerConfig CircuitBreaker { get; set; } = new();

    /// <summary>A plain backend spoken to over TLS (Gateway API BackendTLSPolicy); null: cleartext.</summary>
    public BackendTlsConfig? Tls { get; set; }
}

internal enum LoadBalancerType
{
    /// <summary>Two endpoints drawn at random, the one with fewer requests in flight taken (YARP's and Envoy Gateway's default).</summary>
    PowerOfTwoChoices,
    RoundRobin,

    /// <summary>The endpoint with the fewest requests in flight.</summary>
    LeastRequest,

    /// <summary>Affinity: the same header or cookie value goes to the same endpoint while it is available (a ring of virtual nodes).</summary>
    ConsistentHash,
}

internal sealed record LoadBalancerConfig
{
    public LoadBalancerType Type { get; set; } = LoadBalancerType.PowerOfTwoChoices;

    /// <summary>ConsistentHash: the request header hashed.</summary>
    public string HashHeader { get; set; } = "";

    /// <summary>ConsistentHash: the cookie hashed (instead of a header).</summary>
    public string HashCookie { get; set; } = "";
}

/// <summary>Active health checks: an HTTP GET to each endpoint, through the same path as requests (the mesh tunnel for a service).</summary>
internal sealed record HealthCheckConfig
{
    public string Path { get; set; } = "/";

    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Failed checks in a row that take an endpoint out.</summary>
    public int UnhealthyThreshold { get; set; } = 2;

    /// <summary>Passed checks in a row that bring it back.</summary>
    public int HealthyThreshold { get; set; } = 1;

    /// <summary>Codes that count as healthy; none: 200-399.</summary>
    public IReadOnlyList<int> ExpectedStatuses { get; set; } = [];
}

/// <summary>Passive health: an endpoint that fails (5xx, cannot be connected) this many times in a row is ejected for a while.</summary>
internal sealed record OutlierDetectionConfig
{
    /// <summary>0: never ejected.</summary>
    public int Consecutive5xx { get; set; } = 5;

    /// <summary>The first ejection's length; each further one in a row is longer by as much.</summary>
    public TimeSpan BaseEjectionTime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>At most this share of the endpoints is ejected at once (the rest keep serving even if they fail).</summary>
    public int MaxEjectionPercent { get; set; } = 50;
}

/// <summary>Circuit breaking per backend: how much may be asked of it at once, and when it is given a rest.</summary>
internal sealed record CircuitBreakerConfig
{
    /// <summary>Connections to each endpoint; 0: no limit. Requests beyond them wait for one.</summary>
    public int MaxConnections { get; set; }

    /// <summary>Requests in flight to the backend at once; beyond it they wait in a queue of <see cref="MaxPendingRequests"/>.</summary>
    public int MaxRequests { get; set; } = 1024;

    /// <summary>Requests waiting for one of <see cref="MaxRequests"/>; beyond it a request is refused at once (503, flag UO).</summary>
    public int MaxPendingRequests { get; set; } = 1024;

    /// <summary>The share of failed requests (0-1) in <see cref="SamplingDuration"/> that opens the circuit; 0: never opened.</summary>
    public double FailureRatio { get; set; }

    /// <summary>Requests in the sampling window before the ratio counts.</summary>
    public int MinimumThroughput { get; set; } = 20;

    public TimeSpan SamplingDuration { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long an open circuit refuses requests (503, flag UO) before one is let through to try.</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>TLS to a plain backend (Gateway API BackendTLSPolicy: the CA and the name its certificate must hold).</summary>
internal sealed record BackendTlsConfig
{
    /// <summary>The name sent as SNI and required in the backend's certificate.</summary>
    public string Hostname { get; set; } = "";

    /// <summary>PEM file of the CA certificates the backend's certificate must chain to; empty: the system's roots.</summary>
    public string CaFile { get; set; } = "";
}

internal enum BackendProtocol
{
    Http1,

    /// <summary>Cleartext HTTP/2 with prior knowledge (appProtocol kubernetes.io/h2c): what gRPC servers speak.</summary>
    H2c,
}

/// <summary>A GRPCRoute: hostnames and rules that match gRPC services and methods.</summary>
internal sealed record GrpcRouteConfig
{
    public string Name { get; set; } = "";

    public IReadOnlyList<string> Hostnames { get; set; } = [];

    public IReadOnlyList<string> Listeners { get; set; } = [];

    public IReadOnlyList<GrpcRouteRuleConfig> Rules { get; set; } = [];
}

internal sealed record GrpcRouteRuleConfig
{
    public string Name { get; set; } = "";

    /// <summary>Any one selects the rule; none: every gRPC request.</summary>
    public IReadOnlyList<GrpcRouteMatchConfig> Matches { get; set; } = [];

    /// <summary>RequestHeaderModifier, ResponseHeaderModifier and RequestMirror, as for HTTP routes.</summary>
    public IReadOnlyList<HttpRouteFilterConfig> Filters { get; set; } = [];

    public IReadOnlyList<BackendRefConfig> BackendRefs { get; set; } = [];
}

internal sealed record GrpcRouteMatchConfig
{
    /// <summary>Null: any service and method.</summary>
    public GrpcMethodMatchConfig? Method { get; set; }

    public IReadOnlyList<HttpValueMatchConfig> Headers { get; set; } = [];
}

/// <summary>A gRPC method: <c>service</c> (package.Service) and <c>method</c>, either left out to match any.</summary>
internal sealed record GrpcMethodMatchConfig
{
    public ValueMatchType Type { get; set; } = ValueMatchType.Exact;

    public string Service { get; set; } = "";

    public string Method { get; set; } = "";
}
