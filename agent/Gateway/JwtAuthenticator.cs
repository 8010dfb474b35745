using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace NodeMesh.Gateway;

/// <summary>What a rule's token check decided: let through (with the claims to forward), or answered 401 or 403.</summary>
/// <param name="Status">200 when let through; else 401 (no or a bad token) or 403 (a valid token without what the rule requires).</param>
/// <param name="Challenge">The WWW-Authenticate value of a refusal (RFC 6750).</param>
/// <param name="Reason">Why, for the answer's body and the log.</param>
/// <param name="Subject">The token's <c>sub</c> when let through.</param>
internal sealed record JwtVerdict(int Status, string? Challenge, string Reason, string? Subject, IReadOnlyList<KeyValuePair<string, string>> Headers)
{
    /// <summary>
    /// The caller as mesh policies name it: <c>ISSUER/SUBJECT</c> (Istio's request principal); null without a
    /// <c>sub</c>, or when the two do not fit a flow header (more than 255 bytes, control characters).
    /// </summary>
    public string? Principal { get; init; }

    public bool Ok => Status == 200;

    public static JwtVerdict Unauthorized(string error, string reason) =>
        new(401, error.Length == 0 ? "Bearer" : $"Bearer error=\"{error}\", error_description=\"{reason.Replace("\"", "'", StringComparison.Ordinal)}\"", reason, null, []);
}

/// <summary>
/// One JWT provider: its signing keys (a JWKS from a file re-read when it changes, or from a URL fetched at start,
/// every refresh, and once more — at most every 30 s — for a key id it does not know, as a rotation publishes a new
/// key before using it) and the validation of a bearer token against them with Microsoft.IdentityModel: the
/// signature, <c>iss</c>, <c>aud</c>, <c>exp</c> and <c>nbf</c> within the clock skew; then the rule's scopes and claims.
/// </summary>
internal sealed class JwtAuthenticator : IDisposable
{
    private static readonly TimeSpan UnknownKeyRefetch = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan FilePoll = TimeSpan.FromSeconds(2);

    private readonly JwtProviderConfig _provider;
    private readonly HttpClient? _http;
    private readonly ILogger _logger;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _fetching = new(1, 1);
    private IList<SecurityKey> _keys = [];
    private (DateTime Modified, long Length) _fileStamp;
    private long _lastFetchTicks;

    public JwtAuthenticator(JwtProviderConfig provider, ILogger logger)
    {
        _provider = provider;
        _http = provider.JwksUri.Length > 0 ? new HttpClient { Timeout = TimeSpan.FromSeconds(10) } : null;
        _logger = logger;
    }

    public string Name => _provider.Name;

    /// <summary>
    /// Loads the keys, then keeps them current. Without them the agent still starts (the mesh must not stop for an
    /// identity provider that is down): the provider's rules refuse every token (401) until the keys arrive.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (await RefreshAsync(cancellationToken) is { } problem)
        {
            GatewayLog.JwksNotRefreshed(_logger, _provider.Name, problem);
        }

        _ = KeepCurrentAsync(_stopping.Token);
    }

    /// <summary>Keys from JWKS text (for the file, the URL and tests).</summary>
    internal void Use(string jwks) => Volatile.Write(ref _keys, new JsonWebKeySet(jwks).GetSigningKeys());

    public async Task<JwtVerdict> ValidateAsync(string? authorization, RuleJwtConfig rule)
    {
        if (string.IsNullOrEmpty(authorization) || !authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return JwtVerdict.Unauthorized("", "a bearer token is required (Authorization: Bearer <JWT>)");
        }

        string token = authorization["Bearer ".Length..].Trim();
        TokenValidationResult result = await _handler.ValidateTokenAsync(token, Parameters());
        if (!result.IsValid && result.Exception is SecurityTokenSignatureKeyNotFoundException && _provider.JwksUri.Length > 0
            && Environment.TickCount64 - Interlocked.Read(ref _lastFetchTicks) > UnknownKeyRefetch.TotalMilliseconds)
        {
            await RefreshAsync(_stopping.Token);
            result = await _handler.ValidateTokenAsync(token, Parameters());
        }

        if (!result.IsValid)
        {
            return JwtVerdict.Unauthorized("invalid_token", Describe(result.Exception));
        }

        var jwt = (JsonWebToken)result.SecurityToken;
        string[] missing = [.. rule.RequiredScopes.Where(s => !Scopes(jwt).Contains(s, StringComparer.Ordinal))];
        if (missing.Length > 0)
        {
            string scope = string.Join(' ', rule.RequiredScopes);
            return new JwtVerdict(403, $"Bearer error=\"insufficient_scope\", scope=\"{scope}\"", $"the token lacks the scope {string.Join(", ", missing)}", null, []);
        }

        foreach (RequiredClaimConfig claim in rule.RequiredClaims)
        {
            if (!Values(jwt, claim.Name).Any(v => claim.Values.Contains(v, StringComparer.Ordinal)))
            {
                return new JwtVerdict(403, "Bearer error=\"insufficient_scope\"", $"the token's claim {claim.Name} is not one of {string.Join(", ", claim.Values)}", null, []);
            }
        }

        var headers = new List<KeyValuePair<string, string>>();
        foreach (ClaimHeaderConfig forward in _provider.ForwardClaims)
        {
            string value = string.Join(",", Values(jwt, forward.Claim));
            if (value.Length > 0 && !value.Any(c => c is '\r' or '\n' or '\0'))
            {
                headers.Add(new(forward.Header, value));
            }
        }

        return new JwtVerdict(200, null, "", jwt.Subject, headers) { Principal = Principal(jwt.Issuer, jwt.Subject) };
    }

    /// <summary>The headers a provider forwards: dropped from every request it checks, so only the gateway sets them.</summary>
    public IEnumerable<string> ForwardedHeaders => _provider.ForwardClaims.Select(c => c.Header);

    public void Dispose()
    {
        _stopping.Cancel();
        _stopping.Dispose();
        _fetching.Dispose();
        _http?.Dispose();
    }

    private TokenValidationParameters Parameters() => new()
    {
        ValidIssuer = _provider.Issuer,
        ValidateAudience = _provider.Audiences.Count > 0,
        ValidAudiences = _provider.Audiences,
        IssuerSigningKeys = Volatile.Read(ref _keys),
        ValidateIssuerSigningKey = true,
        RequireSignedTokens = true,
        RequireExpirationTime = true,
        ValidateLifetime = true,
        ClockSkew = _provider.ClockSkew,
        TryAllIssuerSigningKeys = true, // a token without a kid (an issuer with one key) is checked against every key
    };

    private static string? Principal(string issuer, string? subject)
    {
        if (string.IsNullOrEmpty(subject))
        {
            return null;
        }

        string principal = $"{issuer}/{subject}";
        return Tunnel.FlowHeader.IsPrincipal(principal) ? principal : null;
    }

    private static IEnumerable<string> Scopes(JsonWebToken token) =>
        Values(token, "scope").Concat(Values(token, "scp")).SelectMany(v => v.Split(' ', StringSplitOptions.RemoveEmptyEntries));

    /// <summary>A claim's values: the string, each value of a list, a number or boolean as written; none when absent.</summary>
    private static IEnumerable<string> Values(JsonWebToken token, string name) => token.Claims.Where(c => c.Type == name).Select(c => c.Value);

    /// <summary>What is wrong with a token, in a line (never the token itself).</summary>
    private static string Describe(Exception? ex) => ex switch
    {
        SecurityTokenExpiredException => "the token has expired",
        SecurityTokenNotYetValidException => "the token is not valid yet (nbf)",
        SecurityTokenInvalidIssuerException => "the token's issuer is not this provider's",
        SecurityTokenInvalidAudienceException => "the token is not for this audience",
        SecurityTokenSignatureKeyNotFoundException => "the token is signed with a key this provider does not publish",
        SecurityTokenInvalidSignatureException => "the token's signature is not valid",
        SecurityTokenNoExpirationException => "the token has no expiry (exp)",
        SecurityTokenMalformedException or ArgumentException => "the token is not a well-formed JWT",
        _ => "the token is not valid",
    };

    private async Task KeepCurrentAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(_provider.JwksUri.Length > 0 ? _provider.JwksRefresh : FilePoll);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                if (await RefreshAsync(stopping) is { } problem)
                {
                    GatewayLog.JwksNotRefreshed(_logger, _provider.Name, problem);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    /// <summary>Reads the JWKS again (the file only when it changed); null, or what went wrong — the keys in force stay then.</summary>
    private async Task<string?> RefreshAsync(CancellationToken cancellationToken)
    {
        await _fetching.WaitAsync(cancellationToken);
        try
        {
            string jwks;
            if (_http is not null)
            {
                Interlocked.Exchange(ref _lastFetchTicks, Environment.TickCount64);
                using HttpResponseMessage response = await _http.GetAsync(_provider.JwksUri, cancellationToken);
                if (!response.IsSuccessStatusCode)
                {
                    return $"{_provider.JwksUri} answered {(int)response.StatusCode}";
                }

                jwks = await response.Content.ReadAsStringAsync(cancellationToken);
            }
            else
            {
                var info = new FileInfo(_provider.JwksFile);
                if (!info.Exists)
                {
                    return $"{_provider.JwksFile} does not exist";
                }

                if ((info.LastWriteTimeUtc, info.Length) == _fileStamp)
                {
                    return null;
                }

                jwks = await File.ReadAllTextAsync(_provider.JwksFile, cancellationToken);
                _fileStamp = (info.LastWriteTimeUtc, info.Length);
            }

            IList<SecurityKey> keys = new JsonWebKeySet(jwks).GetSigningKeys();
            if (keys.Count == 0)
            {
                return $"{Source} has no signing keys";
            }

            Volatile.Write(ref _keys, keys);
            return null;
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or UnauthorizedAccessException or ArgumentException or JsonException
            or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return $"{Source}: {ex.Message}";
        }
        finally
        {
            _fetching.Release();
        }
    }

    private string Source => _provider.JwksUri.Length > 0 ? _provider.JwksUri : _provider.JwksFile;
}
