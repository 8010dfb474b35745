using System.Net;
using System.Text.RegularExpressions;
using NodeMesh.Gateway;
using NodeMesh.Identity;

namespace NodeMesh.Config;

/// <summary>The checks of the <c>gateway</c> section: every mistake named by its key path, as the rest of the file's.</summary>
internal static partial class ConfigLoader
{
    private static readonly HashSet<string> HttpMethods = new(StringComparer.Ordinal) { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH" };
    private static readonly HashSet<int> RedirectCodes = [301, 302, 303, 307, 308];

    private static void ValidateGateway(List<string> errors, AgentConfig c, Dictionary<int, string> agentPorts)
    {
        GatewayConfig g = c.Gateway;
        if (g.Listeners is null || g.HttpRoutes is null || g.Limits is null)
        {
            errors.Add("gateway: listeners, limits and httpRoutes must not be null");
            return;
        }

        if (g.Identity.Length > 0)
        {
            if (!SpiffeId.TryParse(g.Identity, out SpiffeId? id, out string? error))
            {
                errors.Add($"gateway.identity: {error}");
            }
            else if (id.TrustDomain != c.TrustDomain)
            {
                errors.Add($"gateway.identity: '{id}' is not in the trust domain '{c.TrustDomain}'");
            }
        }

        var listenerNames = new Dictionary<string, string>(StringComparer.Ordinal);
        var endpoints = new Dictionary<string, string>(StringComparer.Ordinal);
        var portsTaken = new Dictionary<int, string>();
        var sharing = new Dictionary<string, List<(string At, GatewayListenerConfig Listener)>>(StringComparer.Ordinal);
        for (int i = 0; i < g.Listeners.Count; i++)
        {
            GatewayListenerConfig l = g.Listeners[i];
            string at = $"gateway.listeners[{i}]";
            RequireName(errors, $"{at}.name", l.Name);
            Unique(errors, listenerNames, l.Name, $"{at}.name", "listener name");
            if (!IPAddress.TryParse(l.Address, out IPAddress? address) || address.ToString() != l.Address)
            {
                errors.Add(MustBe($"{at}.address", l.Address, "an IPv4 or IPv6 address (0.0.0.0: every address)"));
            }

            RequirePort(errors, $"{at}.port", l.Port);
            if (agentPorts.TryGetValue(l.Port, out string? agentPort))
            {
                errors.Add($"{at}.port: {l.Port} is already ports.{agentPort}");
            }

            if (l.Hostname is null)
            {
                errors.Add($"{at}.hostname: must be a string (leave it out for any host)");
                l.Hostname = ""; // the config is refused; the checks below still read it
            }
            else if (l.Hostname.Length > 0 && !IsRouteHostname(l.Hostname))
            {
                errors.Add(MustBe($"{at}.hostname", l.Hostname, "a DNS name (a.example.com) or a wildcard (*.example.com), without a port"));
            }

            // Two listeners on one port would fight over it (0.0.0.0 overlaps every address) — unless they are one
            // socket: the same address, port and cleartext protocol, told apart by host name.
            string exact = $"{l.Address}:{l.Port}";
            if (sharing.TryGetValue(exact, out List<(string At, GatewayListenerConfig Listener)>? same))
            {
                (string otherAt, GatewayListenerConfig other) = same[0];
                if (l.Protocol == GatewayProtocol.Https || other.Protocol == GatewayProtocol.Https)
                {
                    errors.Add($"{at}.port: {l.Port} is already {otherAt} ({other.Name}); an Https listener has its port to itself (its certificates are chosen by SNI, its routes by host name)");
                }
                else if (l.Protocol != other.Protocol)
                {
                    errors.Add($"{at}.protocol: {l.Protocol}, but {otherAt} ({other.Name}) on the same port is {other.Protocol}; listeners that share a port share its protocol");
                }
                else if (same.FirstOrDefault(s => string.Equals(s.Listener.Hostname, l.Hostname, StringComparison.OrdinalIgnoreCase)) is { At: not null } twin)
                {
                    errors.Add($"{at}.hostname: {(l.Hostname.Length > 0 ? $"'{l.Hostname}'" : "none (any host)")} is already {twin.At} ({twin.Listener.Name}) on the same port; listeners that share a port need different host names");
                }

                same.Add((at, l));
            }
            else
            {
                string wildcard = $"*:{l.Port}";
                if (endpoints.TryGetValue(wildcard, out string? other) || (l.Address is "0.0.0.0" or "::" && portsTaken.TryGetValue(l.Port, out other)))
                {
                    errors.Add($"{at}.port: {l.Port} is already {other}");
                }

                sharing[exact] = [(at, l)];
                portsTaken.TryAdd(l.Port, $"{at} ({l.Name})");
                if (l.Address is "0.0.0.0" or "::")
                {
                    endpoints[wildcard] = $"{at} ({l.Name})";
                }
            }

            if (l.Protocol == GatewayProtocol.Https)
            {
                if (l.Tls is not { Certificates.Count: > 0 })
                {
                    errors.Add($"{at}.tls: missing (an Https listener needs tls.certificates: one or more certFile and keyFile)");
                }
                else
                {
                    for (int k = 0; k < l.Tls.Certificates.Count; k++)
                    {
                        RequireAbsolutePath(errors, $"{at}.tls.certificates[{k}].certFile", l.Tls.Certificates[k].CertFile);
                        RequireAbsolutePath(errors, $"{at}.tls.certificates[{k}].keyFile", l.Tls.Certificates[k].KeyFile);
                    }

                    if (l.Tls.ClientValidation is { } clients)
                    {
                        RequireAbsolutePath(errors, $"{at}.tls.clientValidation.caFile", clients.CaFile);
                    }
                }
            }
            else if (l.Tls is not null)
            {
                errors.Add($"{at}.tls: only an Https listener takes certificates; this one is {l.Protocol}");
            }

            if (l.Http3 && l.Protocol != GatewayProtocol.Https)
            {
                errors.Add($"{at}.http3: HTTP/3 runs over QUIC, which is always TLS; only an Https listener takes it");
            }
        }

        GatewayLimitsConfig limits = g.Limits;
        RequireLongRange(errors, "gateway.limits.maxConnections", limits.MaxConnections, 1, 10_000_000);
        RequireRange(errors, "gateway.limits.maxRequestHeadersBytes", limits.MaxRequestHeadersBytes, 1024, 1024 * 1024);
        RequireRange(errors, "gateway.limits.maxRequestHeaderCount", limits.MaxRequestHeaderCount, 1, 10_000);
        RequireLongRange(errors, "gateway.limits.maxRequestBodyBytes", limits.MaxRequestBodyBytes, 0, long.MaxValue);
        RequireDuration(errors, "gateway.limits.requestHeadersTimeout", limits.RequestHeadersTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(10));
        RequireDuration(errors, "gateway.limits.keepAliveTimeout", limits.KeepAliveTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1));
        RequireRange(errors, "gateway.limits.minRequestBodyBytesPerSecond", limits.MinRequestBodyBytesPerSecond, 0, 100 * 1024 * 1024);
        RequireRange(errors, "gateway.limits.http2MaxStreams", limits.Http2MaxStreams, 1, 10_000);
        RequireRange(errors, "gateway.limits.maxClientResetsPerSecond", limits.MaxClientResetsPerSecond, 1, 1_000_000);

        ValidateBackendPolicies(errors, g);
        ValidateJwtProviders(errors, g);
        ValidatePlans(errors, g);
        if (g.HttpRoutes.Count > 0 && g.Listeners.Count == 0)
        {
            errors.Add("gateway.httpRoutes: routes need a listener to serve them; gateway.listeners is empty");
        }

        var routeNames = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int r = 0; r < g.HttpRoutes.Count; r++)
        {
            HttpRouteConfig route = g.HttpRoutes[r];
            string at = $"gateway.httpRoutes[{r}]";
            if (route is null || route.Hostnames is null || route.Listeners is null || route.Rules is null)
            {
                errors.Add($"{at}: must be an object whose hostnames, listeners and rules are lists");
                continue;
            }

            ValidateRouteHead(errors, at, route.Name, route.Hostnames, route.Listeners, route.Rules.Count, routeNames, listenerNames);

            var ruleNames = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < route.Rules.Count; i++)
            {
                HttpRouteRuleConfig rule = route.Rules[i];
                string ruleAt = $"{at}.rules[{i}]";
                if (rule is null || rule.Matches is null || rule.Filters is null || rule.BackendRefs is null || rule.Timeouts is null)
                {
                    errors.Add($"{ruleAt}: must be an object whose matches, filters and backendRefs are lists");
                    continue;
                }

                if (rule.Name.Length > 0)
                {
                    RequireName(errors, $"{ruleAt}.name", rule.Name);
                    Unique(errors, ruleNames, rule.Name, $"{ruleAt}.name", "rule name");
                }

                ValidateRule(errors, ruleAt, rule);
            }
        }

        if (g.GrpcRoutes is null)
        {
            errors.Add("gateway.grpcRoutes: must not be null");
            return;
        }

        if (g.GrpcRoutes.Count > 0 && g.Listeners.Count == 0)
        {
            errors.Add("gateway.grpcRoutes: routes need a listener to serve them; gateway.listeners is empty");
        }

        for (int r = 0; r < g.GrpcRoutes.Count; r++)
        {
            ValidateGrpcRoute(errors, $"gateway.grpcRoutes[{r}]", g.GrpcRoutes[r], routeNames, listenerNames);
        }

        for (int r = 0; r < g.HttpRoutes.Count; r++)
        {
            ValidateListenerHosts(errors, $"gateway.httpRoutes[{r}]", g.HttpRoutes[r]?.Hostnames, g.HttpRoutes[r]?.Listeners, g.Listeners);
        }

        for (int r = 0; r < g.GrpcRoutes.Count; r++)
        {
            ValidateListenerHosts(errors, $"gateway.grpcRoutes[{r}]", g.GrpcRoutes[r]?.Hostnames, g.GrpcRoutes[r]?.Listeners, g.Listeners);
        }
    }

    private static void ValidateJwtProviders(List<string> errors, GatewayConfig g)
    {
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < g.JwtProviders.Count; i++)
        {
            string at = $"gateway.jwtProviders[{i}]";
            if (g.JwtProviders[i] is not { } p)
            {
                errors.Add($"{at}: must be an object");
                continue;
            }

            RequireName(errors, $"{at}.name", p.Name);
            Unique(errors, names, p.Name, $"{at}.name", "JWT provider name");
            if (string.IsNullOrEmpty(p.Issuer))
            {
                errors.Add($"{at}.issuer: missing (the iss its tokens carry)");
            }

            bool file = !string.IsNullOrEmpty(p.JwksFile), uri = !string.IsNullOrEmpty(p.JwksUri);
            if (file == uri)
            {
                errors.Add($"{at}: give one of jwksFile and jwksUri");
            }
            else if (file)
            {
                RequireAbsolutePath(errors, $"{at}.jwksFile", p.JwksFile);
            }
            else if (!Uri.TryCreate(p.JwksUri, UriKind.Absolute, out Uri? jwks) || jwks.Scheme is not ("https" or "http"))
            {
                errors.Add(MustBe($"{at}.jwksUri", p.JwksUri, "an https:// (or http://) URL"));
            }

            RequireDuration(errors, $"{at}.jwksRefresh", p.JwksRefresh, TimeSpan.FromSeconds(10), TimeSpan.FromDays(1));
            RequireDuration(errors, $"{at}.clockSkew", p.ClockSkew, TimeSpan.Zero, TimeSpan.FromMinutes(10));
            for (int k = 0; k < (p.ForwardClaims?.Count ?? 0); k++)
            {
                if (string.IsNullOrEmpty(p.ForwardClaims![k]?.Claim))
                {
                    errors.Add($"{at}.forwardClaims[{k}].claim: missing");
                }

                RequireHeaderName(errors, $"{at}.forwardClaims[{k}].header", p.ForwardClaims[k]?.Header ?? "");
            }
        }

        for (int r = 0; r < g.HttpRoutes.Count; r++)
        {
            for (int i = 0; i < (g.HttpRoutes[r]?.Rules?.Count ?? 0); i++)
            {
                if (g.HttpRoutes[r].Rules[i]?.Jwt is { Provider.Length: > 0 } jwt && !names.ContainsKey(jwt.Provider))
                {
                    errors.Add(MustBe($"gateway.httpRoutes[{r}].rules[{i}].jwt.provider", jwt.Provider,
                        $"the name of one of gateway.jwtProviders ({(names.Count == 0 ? "there are none" : string.Join(", ", names.Keys))})"));
                }
            }
        }
    }

    private static void ValidatePlans(List<string> errors, GatewayConfig g)
    {
        if (g.Plans is null)
        {
            errors.Add("gateway.plans: must be a list");
            return;
        }

        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < g.Plans.Count; i++)
        {
            string at = $"gateway.plans[{i}]";
            if (g.Plans[i] is not { RateLimits: not null } plan)
            {
                errors.Add($"{at}: must be an object whose rateLimits is a list");
                continue;
            }

            RequireName(errors, $"{at}.name", plan.Name);
            Unique(errors, names, plan.Name, $"{at}.name", "plan name");
            RequireLongRange(errors, $"{at}.dailyQuota", plan.DailyQuota, 0, 10_000_000_000);
            for (int k = 0; k < plan.RateLimits.Count; k++)
            {
                if (plan.RateLimits[k] is not { } limit)
                {
                    errors.Add($"{at}.rateLimits[{k}]: must be an object");
                    continue;
                }

                ValidateRateLimit(errors, $"{at}.rateLimits[{k}]", limit.ToRateLimit());
            }
        }

        for (int r = 0; r < g.HttpRoutes.Count; r++)
        {
            for (int i = 0; i < (g.HttpRoutes[r]?.Rules?.Count ?? 0); i++)
            {
                HttpRouteRuleConfig? rule = g.HttpRoutes[r].Rules[i];
                bool perConsumer = false;
                foreach (RateLimitConfig? limit in rule?.RateLimits ?? [])
                {
                    perConsumer |= limit?.Key == RateLimitKey.Consumer;
                }

                if (perConsumer && rule!.Consumers is null)
                {
                    errors.Add($"gateway.httpRoutes[{r}].rules[{i}].rateLimits: a limit keyed by Consumer needs the rule to identify consumers (its consumers section)");
                }
            }
        }
    }

    private static void ValidateRuleConsumers(List<string> errors, string at, RuleConsumersConfig consumers)
    {
        if (consumers.Allowed is null)
        {
            errors.Add($"{at}.allowed: must be a list");
            return;
        }

        if (consumers.ApiKeyHeader.Length > 0)
        {
            RequireHeaderName(errors, $"{at}.apiKeyHeader", consumers.ApiKeyHeader);
        }

        if (consumers.ForwardHeader.Length > 0)
        {
            RequireHeaderName(errors, $"{at}.forwardHeader", consumers.ForwardHeader);
        }

        if (consumers.ApiKeyQueryParameter.Any(c => c <= ' ' || c is '&' or '=' or '#' or '%' or '+'))
        {
            errors.Add(MustBe($"{at}.apiKeyQueryParameter", consumers.ApiKeyQueryParameter, "a query parameter's name (no spaces, '&', '=', '#', '%' or '+')"));
        }

        if (consumers is { ApiKeyHeader.Length: 0, ApiKeyQueryParameter.Length: 0, ClientCertificates: false })
        {
            errors.Add($"{at}: names no credential: give an apiKeyHeader, an apiKeyQueryParameter or clientCertificates: true");
        }

        for (int k = 0; k < consumers.Allowed.Count; k++)
        {
            if (!Identity.MeshIdentities.IsNodeName(consumers.Allowed[k]))
            {
                errors.Add(MustBe($"{at}.allowed[{k}]", consumers.Allowed[k] ?? "", "a consumer's name (1-63 of a-z, 0-9, '-', '.')"));
            }
        }
    }

    /// <summary>
    /// A route's host names must have a name in common with one of its listeners' (the Gateway API's intersection);
    /// otherwise it could never take a request, which is a mistake worth naming.
    /// </summary>
    private static void ValidateListenerHosts(List<string> errors, string at, IReadOnlyList<string>? hostnames, IReadOnlyList<string>? names, IReadOnlyList<GatewayListenerConfig> listeners)
    {
        if (hostnames is not { Count: > 0 } || names is null || hostnames.Any(h => h is null || !IsRouteHostname(h)))
        {
            return;
        }

        var attached = listeners.Where(l => l is not null && (names.Count == 0 || names.Contains(l.Name))).ToList();
        if (attached.Count == 0 || attached.Any(l => l.Hostname.Length == 0 || hostnames.Any(h => ListenerTable.Intersect(h, l.Hostname))))
        {
            return;
        }

        errors.Add($"{at}.hostnames: none of them is within the host name of a listener the route attaches to ({string.Join(", ", attached.Select(l => $"{l.Name}: {l.Hostname}"))}), so it could never take a request");
    }

    /// <summary>
    /// What HTTP and gRPC routes share: a name unique among both (they label the same metrics and log lines), host
    /// names, listeners that exist, and at least one rule.
    /// </summary>
    private static void ValidateRouteHead(List<string> errors, string at, string name, IReadOnlyList<string> hostnames, IReadOnlyList<string> listeners, int rules,
        Dictionary<string, string> routeNames, Dictionary<string, string> listenerNames)
    {
        RequireName(errors, $"{at}.name", name);
        Unique(errors, routeNames, name, $"{at}.name", "route name");
        for (int h = 0; h < hostnames.Count; h++)
        {
            if (!IsRouteHostname(hostnames[h]))
            {
                errors.Add(MustBe($"{at}.hostnames[{h}]", hostnames[h], "a DNS name (a.example.com) or a wildcard (*.example.com), without a port"));
            }
        }

        for (int k = 0; k < listeners.Count; k++)
        {
            if (!listenerNames.ContainsKey(listeners[k]))
            {
                errors.Add(MustBe($"{at}.listeners[{k}]", listeners[k], $"the name of one of gateway.listeners ({string.Join(", ", listenerNames.Keys)})"));
            }
        }

        if (rules == 0)
        {
            errors.Add($"{at}.rules: empty; a route needs at least one rule");
        }
    }

    private static readonly Regex GrpcName = new("^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$", RegexOptions.CultureInvariant);

    private static void ValidateGrpcRoute(List<string> errors, string at, GrpcRouteConfig route, Dictionary<string, string> routeNames, Dictionary<string, string> listenerNames)
    {
        if (route is null || route.Hostnames is null || route.Listeners is null || route.Rules is null)
        {
            errors.Add($"{at}: must be an object whose hostnames, listeners and rules are lists");
            return;
        }

        ValidateRouteHead(errors, at, route.Name, route.Hostnames, route.Listeners, route.Rules.Count, routeNames, listenerNames);

        for (int i = 0; i < route.Rules.Count; i++)
        {
            GrpcRouteRuleConfig rule = route.Rules[i];
            string ruleAt = $"{at}.rules[{i}]";
            if (rule is null || rule.Matches is null || rule.Filters is null || rule.BackendRefs is null)
            {
                errors.Add($"{ruleAt}: must be an object whose matches, filters and backendRefs are lists");
                continue;
            }

            if (rule.Name.Length > 0)
            {
                RequireName(errors, $"{ruleAt}.name", rule.Name);
            }

            for (int m = 0; m < rule.Matches.Count; m++)
            {
                GrpcRouteMatchConfig match = rule.Matches[m];
                string mAt = $"{ruleAt}.matches[{m}]";
                if (match.Method is { } method)
                {
                    if (method.Type == ValueMatchType.Exact)
                    {
                        if (method.Service.Length > 0 && !GrpcName.IsMatch(method.Service))
                        {
                            errors.Add(MustBe($"{mAt}.method.service", method.Service, "a gRPC service name (package.Service)"));
                        }

                        if (method.Method.Length > 0 && !GrpcName.IsMatch(method.Method) || method.Method.Contains('.', StringComparison.Ordinal))
                        {
                            errors.Add(MustBe($"{mAt}.method.method", method.Method, "a gRPC method name"));
                        }
                    }
                    else
                    {
                        RequireRegex(errors, $"{mAt}.method.service", method.Service.Length > 0 ? method.Service : ".*");
                        RequireRegex(errors, $"{mAt}.method.method", method.Method.Length > 0 ? method.Method : ".*");
                    }
                }

                for (int h = 0; h < (match.Headers?.Count ?? 0); h++)
                {
                    RequireHeaderName(errors, $"{mAt}.headers[{h}].name", match.Headers![h].Name);
                }
            }

            for (int f = 0; f < rule.Filters.Count; f++)
            {
                if (rule.Filters[f].Type is not (HttpRouteFilterType.RequestHeaderModifier or HttpRouteFilterType.ResponseHeaderModifier or HttpRouteFilterType.RequestMirror))
                {
                    errors.Add($"{ruleAt}.filters[{f}].type: a GRPCRoute takes RequestHeaderModifier, ResponseHeaderModifier and RequestMirror, not {rule.Filters[f].Type}");
                }
            }

            // The filters and backends are an HTTP rule's: checked as one.
            ValidateRule(errors, ruleAt, new HttpRouteRuleConfig { Filters = rule.Filters, BackendRefs = rule.BackendRefs });
        }
    }

    private static void ValidateBackendPolicies(List<string> errors, GatewayConfig g)
    {
        if (g.BackendPolicies is null)
        {
            errors.Add("gateway.backendPolicies: must not be null");
            return;
        }

        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < g.BackendPolicies.Count; i++)
        {
            BackendPolicyConfig p = g.BackendPolicies[i];
            string at = $"gateway.backendPolicies[{i}]";
            if (p is null || p.LoadBalancer is null || p.OutlierDetection is null || p.CircuitBreaker is null)
            {
                errors.Add($"{at}: must be an object whose loadBalancer, outlierDetection and circuitBreaker are objects");
                continue;
            }

            bool address = p.Backend.Contains(':', StringComparison.Ordinal);
            if (address ? !IsHostPort(p.Backend) : !IsName(p.Backend))
            {
                errors.Add(MustBe($"{at}.backend", p.Backend, "a mesh service's name or a plain backend's host:port, as the rules' backendRefs name it"));
            }

            Unique(errors, seen, p.Backend, $"{at}.backend", "backend");
            if (p.LoadBalancer.Type == LoadBalancerType.ConsistentHash && (p.LoadBalancer.HashHeader.Length > 0) == (p.LoadBalancer.HashCookie.Length > 0))
            {
                errors.Add($"{at}.loadBalancer: ConsistentHash needs exactly one of hashHeader and hashCookie");
            }
            else if (p.LoadBalancer.HashHeader.Length > 0)
            {
                RequireHeaderName(errors, $"{at}.loadBalancer.hashHeader", p.LoadBalancer.HashHeader);
            }

            if (p.HealthCheck is { } h)
            {
                if (!h.Path.StartsWith('/') || h.Path.Any(char.IsControl))
                {
                    errors.Add(MustBe($"{at}.healthCheck.path", h.Path, "a path starting with '/'"));
                }

                RequireDuration(errors, $"{at}.healthCheck.interval", h.Interval, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
                RequireDuration(errors, $"{at}.healthCheck.timeout", h.Timeout, TimeSpan.FromMilliseconds(10), TimeSpan.FromMinutes(1));
                RequireRange(errors, $"{at}.healthCheck.unhealthyThreshold", h.UnhealthyThreshold, 1, 100);
                RequireRange(errors, $"{at}.healthCheck.healthyThreshold", h.HealthyThreshold, 1, 100);
                for (int k = 0; k < (h.ExpectedStatuses?.Count ?? 0); k++)
                {
                    RequireRange(errors, $"{at}.healthCheck.expectedStatuses[{k}]", h.ExpectedStatuses![k], 100, 599);
                }
            }

            RequireRange(errors, $"{at}.outlierDetection.consecutive5xx", p.OutlierDetection.Consecutive5xx, 0, 1000);
            RequireDuration(errors, $"{at}.outlierDetection.baseEjectionTime", p.OutlierDetection.BaseEjectionTime, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1));
            RequireRange(errors, $"{at}.outlierDetection.maxEjectionPercent", p.OutlierDetection.MaxEjectionPercent, 0, 100);
            CircuitBreakerConfig c = p.CircuitBreaker;
            RequireRange(errors, $"{at}.circuitBreaker.maxConnections", c.MaxConnections, 0, 1_000_000);
            RequireRange(errors, $"{at}.circuitBreaker.maxRequests", c.MaxRequests, 1, 1_000_000);
            RequireRange(errors, $"{at}.circuitBreaker.maxPendingRequests", c.MaxPendingRequests, 0, 1_000_000);
            if (c.FailureRatio != 0)
            {
                // Polly's circuit breaker's own bounds.
                if (c.FailureRatio is < 0 or > 1 || double.IsNaN(c.FailureRatio))
                {
                    errors.Add($"{at}.circuitBreaker.failureRatio: {c.FailureRatio} must be between 0 (off) and 1");
                }

                RequireRange(errors, $"{at}.circuitBreaker.minimumThroughput", c.MinimumThroughput, 2, 1_000_000);
                RequireDuration(errors, $"{at}.circuitBreaker.samplingDuration", c.SamplingDuration, TimeSpan.FromMilliseconds(500), TimeSpan.FromDays(1));
                RequireDuration(errors, $"{at}.circuitBreaker.breakDuration", c.BreakDuration, TimeSpan.FromMilliseconds(500), TimeSpan.FromDays(1));
            }

            if (p.Tls is { } tls)
            {
                if (!address)
                {
                    errors.Add($"{at}.tls: only a plain backend (host:port) takes TLS settings; a mesh service is reached over the mesh's mTLS already");
                }

                if (!IsRouteHostname(tls.Hostname) || tls.Hostname.StartsWith('*'))
                {
                    errors.Add(MustBe($"{at}.tls.hostname", tls.Hostname, "the DNS name the backend's certificate holds"));
                }

                if (tls.CaFile.Length > 0)
                {
                    RequireAbsolutePath(errors, $"{at}.tls.caFile", tls.CaFile);
                }
            }
        }
    }

    private static void ValidateRule(List<string> errors, string at, HttpRouteRuleConfig rule)
    {
        for (int m = 0; m < rule.Matches.Count; m++)
        {
            ValidateMatch(errors, $"{at}.matches[{m}]", rule.Matches[m]);
        }

        var seen = new Dictionary<HttpRouteFilterType, int>();
        for (int f = 0; f < rule.Filters.Count; f++)
        {
            HttpRouteFilterConfig filter = rule.Filters[f];
            string fAt = $"{at}.filters[{f}]";
            if (filter.Type != HttpRouteFilterType.RequestMirror && seen.TryGetValue(filter.Type, out int first))
            {
                errors.Add($"{fAt}.type: {filter.Type} is already {at}.filters[{first}]; a rule takes each filter type once (RequestMirror excepted)");
            }

            seen.TryAdd(filter.Type, f);
            object? own = FilterField(errors, fAt, filter, out string field);
            switch (own)
            {
                case HeaderModifierConfig headers:
                    ValidateHeaderModifier(errors, $"{fAt}.{field}", headers);
                    break;
                case RequestRedirectConfig redirect:
                    if (redirect.Scheme.Length > 0 && redirect.Scheme is not ("http" or "https"))
                    {
                        errors.Add(MustBe($"{fAt}.requestRedirect.scheme", redirect.Scheme, "http or https"));
                    }

                    if (redirect.Hostname.Length > 0 && (!IsRouteHostname(redirect.Hostname) || redirect.Hostname.StartsWith('*')))
                    {
                        errors.Add(MustBe($"{fAt}.requestRedirect.hostname", redirect.Hostname, "a DNS name"));
                    }

                    if (redirect.Port != 0)
                    {
                        RequirePort(errors, $"{fAt}.requestRedirect.port", redirect.Port);
                    }

                    if (!RedirectCodes.Contains(redirect.StatusCode))
                    {
                        errors.Add($"{fAt}.requestRedirect.statusCode: {redirect.StatusCode} must be 301, 302, 303, 307 or 308");
                    }

                    ValidatePathModifier(errors, $"{fAt}.requestRedirect.path", redirect.Path, rule);
                    break;
                case UrlRewriteConfig rewrite:
                    if (rewrite.Hostname.Length > 0 && (!IsRouteHostname(rewrite.Hostname) || rewrite.Hostname.StartsWith('*')))
                    {
                        errors.Add(MustBe($"{fAt}.urlRewrite.hostname", rewrite.Hostname, "a DNS name"));
                    }

                    ValidatePathModifier(errors, $"{fAt}.urlRewrite.path", rewrite.Path, rule);
                    break;
                case RequestMirrorConfig mirror:
                    ValidateBackendRef(errors, $"{fAt}.requestMirror.backendRef", mirror.BackendRef);
                    if (mirror.BackendRef is { Filters.Count: > 0 })
                    {
                        errors.Add($"{fAt}.requestMirror.backendRef.filters: a mirror's copy takes the rule's filters, not filters of its own");
                    }

                    RequireRange(errors, $"{fAt}.requestMirror.percent", mirror.Percent, 0, 100);
                    break;
            }
        }

        if (seen.ContainsKey(HttpRouteFilterType.RequestRedirect))
        {
            if (seen.ContainsKey(HttpRouteFilterType.UrlRewrite))
            {
                errors.Add($"{at}.filters: RequestRedirect and UrlRewrite cannot be in one rule (a redirect forwards nothing to rewrite)");
            }

            if (rule.BackendRefs.Count > 0)
            {
                errors.Add($"{at}.backendRefs: a rule with a RequestRedirect answers itself; it takes no backends");
            }
        }

        for (int b = 0; b < rule.BackendRefs.Count; b++)
        {
            ValidateBackendRef(errors, $"{at}.backendRefs[{b}]", rule.BackendRefs[b]);
            ValidateBackendRefFilters(errors, $"{at}.backendRefs[{b}]", rule.BackendRefs[b]);
        }

        RequireDuration(errors, $"{at}.timeouts.request", rule.Timeouts.Request, TimeSpan.Zero, TimeSpan.FromHours(1));
        RequireDuration(errors, $"{at}.timeouts.backendRequest", rule.Timeouts.BackendRequest, TimeSpan.Zero, TimeSpan.FromHours(1));
        if (rule.Timeouts.Request > TimeSpan.Zero && rule.Timeouts.BackendRequest > rule.Timeouts.Request)
        {
            errors.Add($"{at}.timeouts.backendRequest: must not be longer than timeouts.request (the whole request, retries included)");
        }

        if (rule.Retry is { } retry)
        {
            RequireRange(errors, $"{at}.retry.attempts", retry.Attempts, 0, 10);
            RequireDuration(errors, $"{at}.retry.backoff", retry.Backoff, TimeSpan.Zero, TimeSpan.FromSeconds(30));
            RequireRange(errors, $"{at}.retry.budgetPercent", retry.BudgetPercent, 0, 100);
            RequireRange(errors, $"{at}.retry.minRetryConcurrency", retry.MinRetryConcurrency, 0, 100_000);
            for (int k = 0; k < (retry.Codes?.Count ?? 0); k++)
            {
                RequireRange(errors, $"{at}.retry.codes[{k}]", retry.Codes![k], 500, 599);
            }
        }

        if (rule.Jwt is { } jwt)
        {
            if (string.IsNullOrEmpty(jwt.Provider))
            {
                errors.Add($"{at}.jwt.provider: missing (the name of one of gateway.jwtProviders)");
            }

            for (int k = 0; k < (jwt.RequiredScopes?.Count ?? 0); k++)
            {
                if (string.IsNullOrEmpty(jwt.RequiredScopes![k]) || jwt.RequiredScopes[k].Any(c => c <= ' ' || c == '"' || c == '\\'))
                {
                    errors.Add(MustBe($"{at}.jwt.requiredScopes[{k}]", jwt.RequiredScopes[k], "a scope (printable, no spaces or quotes)"));
                }
            }

            for (int k = 0; k < (jwt.RequiredClaims?.Count ?? 0); k++)
            {
                if (jwt.RequiredClaims![k] is not { Name.Length: > 0, Values.Count: > 0 })
                {
                    errors.Add($"{at}.jwt.requiredClaims[{k}]: needs a name and at least one value");
                }
            }
        }

        if (rule.Consumers is { } consumers)
        {
            ValidateRuleConsumers(errors, $"{at}.consumers", consumers);
        }

        if (rule.RateLimits is null)
        {
            errors.Add($"{at}.rateLimits: must be a list");
            return;
        }

        for (int k = 0; k < rule.RateLimits.Count; k++)
        {
            string lAt = $"{at}.rateLimits[{k}]";
            if (rule.RateLimits[k] is not { } limit)
            {
                errors.Add($"{lAt}: must be an object");
                continue;
            }

            ValidateRateLimit(errors, lAt, limit);
        }
    }

    private static void ValidateRateLimit(List<string> errors, string lAt, RateLimitConfig limit)
    {
        RequireRange(errors, $"{lAt}.requests", limit.Requests, 1, 100_000_000);
        RequireDuration(errors, $"{lAt}.window", limit.Window, TimeSpan.FromMilliseconds(100), TimeSpan.FromDays(1));
        if (limit.Algorithm == RateLimitAlgorithm.SlidingWindow && limit.Burst != 0)
        {
            errors.Add($"{lAt}.burst: only a TokenBucket takes a burst; a SlidingWindow allows requests per window and no more");
        }
        else if (limit.Burst != 0)
        {
            RequireRange(errors, $"{lAt}.burst", limit.Burst, 1, 100_000_000);
        }
    }

    private static void ValidateMatch(List<string> errors, string at, HttpRouteMatchConfig match)
    {
        if (match is null || match.Headers is null || match.QueryParams is null)
        {
            errors.Add($"{at}: must be an object whose headers and queryParams are lists");
            return;
        }

        if (match.Path is { } path)
        {
            if (path.Type == PathMatchType.RegularExpression)
            {
                RequireRegex(errors, $"{at}.path.value", path.Value);
            }
            else if (!path.Value.StartsWith('/') || path.Value.Any(char.IsControl) || path.Value.Contains('?', StringComparison.Ordinal) || path.Value.Contains('#', StringComparison.Ordinal))
            {
                errors.Add(MustBe($"{at}.path.value", path.Value, "a path starting with '/', without '?' or '#'"));
            }
        }

        for (int h = 0; h < match.Headers.Count; h++)
        {
            RequireHeaderName(errors, $"{at}.headers[{h}].name", match.Headers[h].Name);
            if (match.Headers[h].Type == ValueMatchType.RegularExpression)
            {
                RequireRegex(errors, $"{at}.headers[{h}].value", match.Headers[h].Value);
            }
        }

        for (int q = 0; q < match.QueryParams.Count; q++)
        {
            if (match.QueryParams[q].Name.Length == 0)
            {
                errors.Add($"{at}.queryParams[{q}].name: missing");
            }

            if (match.QueryParams[q].Type == ValueMatchType.RegularExpression)
            {
                RequireRegex(errors, $"{at}.queryParams[{q}].value", match.QueryParams[q].Value);
            }
        }

        if (match.Method.Length > 0 && !HttpMethods.Contains(match.Method))
        {
            errors.Add(MustBe($"{at}.method", match.Method, "an HTTP method in capitals (GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"));
        }
    }

    private static void ValidatePathModifier(List<string> errors, string at, HttpPathModifierConfig? modifier, HttpRouteRuleConfig rule)
    {
        if (modifier is null)
        {
            return;
        }

        string value = modifier.Type == PathModifierType.ReplaceFullPath ? modifier.ReplaceFullPath : modifier.ReplacePrefixMatch;
        string field = modifier.Type == PathModifierType.ReplaceFullPath ? "replaceFullPath" : "replacePrefixMatch";
        if (!value.StartsWith('/') || value.Any(char.IsControl) || value.Contains('?', StringComparison.Ordinal))
        {
            errors.Add(MustBe($"{at}.{field}", value, "a path starting with '/'"));
        }

        // The Gateway API: ReplacePrefixMatch only where every match is a PathPrefix (there is no prefix to replace otherwise).
        if (modifier.Type == PathModifierType.ReplacePrefixMatch && rule.Matches.Any(m => m.Path is { Type: not PathMatchType.PathPrefix }))
        {
            errors.Add($"{at}: ReplacePrefixMatch needs every match of the rule to be a PathPrefix match");
        }
    }

    /// <summary>The field a filter's type names (null, and said so, when it is missing); a filter that sets another type's field is an error too.</summary>
    private static object? FilterField(List<string> errors, string at, HttpRouteFilterConfig filter, out string field)
    {
        object?[] set = [filter.RequestHeaderModifier, filter.ResponseHeaderModifier, filter.RequestRedirect, filter.UrlRewrite, filter.RequestMirror];
        object? own = filter.Type switch
        {
            HttpRouteFilterType.RequestHeaderModifier => filter.RequestHeaderModifier,
            HttpRouteFilterType.ResponseHeaderModifier => filter.ResponseHeaderModifier,
            HttpRouteFilterType.RequestRedirect => filter.RequestRedirect,
            HttpRouteFilterType.UrlRewrite => filter.UrlRewrite,
            _ => filter.RequestMirror,
        };
        field = char.ToLowerInvariant(filter.Type.ToString()[0]) + filter.Type.ToString()[1..];
        if (own is null)
        {
            errors.Add($"{at}.{field}: missing (a filter of type {filter.Type} sets it)");
        }
        else if (set.Count(o => o is not null) > 1)
        {
            errors.Add($"{at}: sets fields of another type than {filter.Type}; a filter does one thing");
        }

        return own;
    }

    /// <summary>A backendRef's own filters (the Gateway API's, applied only when that backend is chosen): header modifiers, each type once.</summary>
    private static void ValidateBackendRefFilters(List<string> errors, string at, BackendRefConfig backend)
    {
        if (backend?.Filters is null)
        {
            if (backend is not null)
            {
                errors.Add($"{at}.filters: must be a list");
            }

            return;
        }

        var seen = new Dictionary<HttpRouteFilterType, int>();
        for (int f = 0; f < backend.Filters.Count; f++)
        {
            string fAt = $"{at}.filters[{f}]";
            HttpRouteFilterConfig filter = backend.Filters[f];
            if (filter is null)
            {
                errors.Add($"{fAt}: must be an object");
                continue;
            }

            if (filter.Type is not (HttpRouteFilterType.RequestHeaderModifier or HttpRouteFilterType.ResponseHeaderModifier))
            {
                errors.Add($"{fAt}.type: a backendRef takes RequestHeaderModifier and ResponseHeaderModifier, not {filter.Type} (give it to the rule)");
                continue;
            }

            if (!seen.TryAdd(filter.Type, f))
            {
                errors.Add($"{fAt}.type: {filter.Type} is already {at}.filters[{seen[filter.Type]}]; a backendRef takes each filter type once");
            }

            if (FilterField(errors, fAt, filter, out string field) is HeaderModifierConfig headers)
            {
                ValidateHeaderModifier(errors, $"{fAt}.{field}", headers);
            }
        }
    }

    private static void ValidateHeaderModifier(List<string> errors, string at, HeaderModifierConfig modifier)
    {
        var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach ((string list, IReadOnlyList<HttpHeaderConfig> headers) in new[] { ("set", modifier.Set), ("add", modifier.Add) })
        {
            for (int i = 0; i < headers.Count; i++)
            {
                RequireHeaderName(errors, $"{at}.{list}[{i}].name", headers[i].Name);
                if (headers[i].Value.Any(c => c is '\r' or '\n' or '\0'))
                {
                    errors.Add($"{at}.{list}[{i}].value: must not hold CR, LF or NUL");
                }

                if (!names.Add(headers[i].Name))
                {
                    errors.Add($"{at}.{list}[{i}].name: header '{headers[i].Name}' is named twice in one modifier");
                }
            }
        }

        for (int i = 0; i < modifier.Remove.Count; i++)
        {
            RequireHeaderName(errors, $"{at}.remove[{i}]", modifier.Remove[i]);
        }
    }

    private static void ValidateBackendRef(List<string> errors, string at, BackendRefConfig backend)
    {
        if (backend is null)
        {
            errors.Add($"{at}: must be an object");
            return;
        }

        if (backend.Address.Length > 0)
        {
            if (backend.Name.Length > 0)
            {
                errors.Add($"{at}: give either name and port (a mesh service) or address (host:port), not both");
            }
            else if (!IsHostPort(backend.Address))
            {
                errors.Add(MustBe($"{at}.address", backend.Address, "host:port (a DNS name or an IP address, [ ] around IPv6, and a port)"));
            }
        }
        else
        {
            RequireName(errors, $"{at}.name", backend.Name);
            RequirePort(errors, $"{at}.port", backend.Port);
        }

        RequireRange(errors, $"{at}.weight", backend.Weight, 0, 1_000_000);
    }

    private static void RequireRegex(List<string> errors, string at, string pattern)
    {
        try
        {
            _ = RouteTable.CompileRegex(pattern);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException)
        {
            // NonBacktracking refuses backreferences and lookarounds: say so rather than run them slowly.
            errors.Add($"{at}: '{SpiffeId.Printable(pattern)}' is not a usable regular expression: {ex.Message}");
        }
    }

    private static void RequireHeaderName(List<string> errors, string at, string name)
    {
        if (name.Length == 0 || name.Length > 256 || !name.All(IsTokenChar))
        {
            errors.Add(MustBe(at, name, "a header name (letters, digits and !#$%&'*+-.^_`|~)"));
        }
    }

    private static void RequireLongRange(List<string> errors, string path, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{path}: {value} must be between {min} and {max}");
        }
    }

    private static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);

    /// <summary>A host name as HTTPRoute takes it: lower-case DNS labels, optionally a leading "*." wildcard.</summary>
    internal static bool IsRouteHostname(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Length > 253)
        {
            return false;
        }

        string name = value.StartsWith("*.", StringComparison.Ordinal) ? value[2..] : value;
        return name.Split('.').All(label => label.Length is > 0 and <= 63 && label[0] != '-' && label[^1] != '-'
            && label.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'));
    }

    internal static bool IsHostPort(string value)
    {
        int colon = value.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(value.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            return false;
        }

        string host = value[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            return IPAddress.TryParse(host[1..^1], out IPAddress? v6) && v6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6;
        }

        return IPAddress.TryParse(host, out IPAddress? ip) ? ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork : IsRouteHostname(host.ToLowerInvariant()) && !host.StartsWith('*');
    }
}
