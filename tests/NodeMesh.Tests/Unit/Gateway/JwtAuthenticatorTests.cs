using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Gateway;
using NodeMesh.Tests.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

/// <summary>A rule's token check, decided without sockets: keys from a JWKS, tokens signed by a test issuer.</summary>
public sealed class JwtAuthenticatorTests : IDisposable
{
    private const string Issuer = "https://issuer.example.com/";
    private const string Audience = "shop";

    private readonly TestTokens _issuer = new("k1");
    private readonly TestTokens _stranger = new("k1");
    private readonly JwtAuthenticator _authenticator;

    public JwtAuthenticatorTests()
    {
        _authenticator = new JwtAuthenticator(new JwtProviderConfig
        {
            Name = "idp", Issuer = Issuer, Audiences = [Audience], JwksFile = "/unused", ClockSkew = TimeSpan.FromSeconds(30),
            ForwardClaims = [new ClaimHeaderConfig { Claim = "sub", Header = "x-user" }, new ClaimHeaderConfig { Claim = "roles", Header = "x-roles" }],
        }, NullLogger.Instance);
        _authenticator.Use(_issuer.Jwks);
    }

    private static readonly RuleJwtConfig Any = new() { Provider = "idp" };

    private Task<JwtVerdict> Check(string? token, RuleJwtConfig? rule = null) => _authenticator.ValidateAsync(token is null ? null : "Bearer " + token, rule ?? Any);

    [Fact]
    public async Task AValidToken_IsLetThrough_WithItsClaimsForwarded()
    {
        JwtVerdict verdict = await Check(_issuer.Create(Issuer, Audience, "alice", new Dictionary<string, object> { ["roles"] = new[] { "admin", "ops" } }));
        Assert.True(verdict.Ok, verdict.Reason);
        Assert.Equal("alice", verdict.Subject);
        Assert.Equal([new("x-user", "alice"), new("x-roles", "admin,ops")], verdict.Headers);
    }

    [Fact]
    public async Task ATokenWithoutAKeyId_IsCheckedAgainstEveryKey()
    {
        Assert.True((await Check(_issuer.Create(Issuer, Audience, "a", withKeyId: false))).Ok);
        Assert.Equal(401, (await Check(_stranger.Create(Issuer, Audience, "a", withKeyId: false))).Status);
    }

    [Fact]
    public async Task BadTokens_Get401_WithTheReasonAndAChallenge()
    {
        JwtVerdict none = await Check(null);
        Assert.Equal((401, "Bearer"), (none.Status, none.Challenge));
        Assert.Contains("bearer token is required", none.Reason, StringComparison.Ordinal);

        foreach ((string token, string reason) in new[]
        {
            (_issuer.Create(Issuer, Audience, "a", lifetime: TimeSpan.FromMinutes(-5)), "the token has expired"),
            (_issuer.Create(Issuer, Audience, "a", notBefore: TimeSpan.FromMinutes(5)), "the token is not valid yet (nbf)"),
            (_issuer.Create("https://other.example.com/", Audience, "a"), "the token's issuer is not this provider's"),
            (_issuer.Create(Issuer, "billing", "a"), "the token is not for this audience"),
            (_stranger.Create(Issuer, Audience, "a"), "the token's signature is not valid"),
            ("not.a.jwt", "the token is not a well-formed JWT"),
        })
        {
            JwtVerdict verdict = await Check(token);
            Assert.True(verdict.Status == 401 && verdict.Reason == reason && verdict.Challenge!.StartsWith("Bearer error=\"invalid_token\"", StringComparison.Ordinal),
                $"expected 401 '{reason}', got {verdict.Status} '{verdict.Reason}' {verdict.Challenge}");
        }

        // Within the clock skew an expired token still passes (clocks differ a little between issuer and gateway).
        Assert.True((await Check(_issuer.Create(Issuer, Audience, "a", lifetime: TimeSpan.FromSeconds(-10)))).Ok);
    }

    [Fact]
    public async Task AValidTokenWithoutTheRulesScopesOrClaims_Gets403()
    {
        var rule = new RuleJwtConfig { Provider = "idp", RequiredScopes = ["orders:read"], RequiredClaims = [new RequiredClaimConfig { Name = "tier", Values = ["gold", "silver"] }] };
        Assert.True((await Check(_issuer.Create(Issuer, Audience, "a", new Dictionary<string, object> { ["scope"] = "orders:read orders:write", ["tier"] = "gold" }), rule)).Ok);

        JwtVerdict noScope = await Check(_issuer.Create(Issuer, Audience, "a", new Dictionary<string, object> { ["scope"] = "orders:write", ["tier"] = "gold" }), rule);
        Assert.Equal((403, "Bearer error=\"insufficient_scope\", scope=\"orders:read\""), (noScope.Status, noScope.Challenge));
        Assert.Contains("lacks the scope orders:read", noScope.Reason, StringComparison.Ordinal);

        JwtVerdict wrongTier = await Check(_issuer.Create(Issuer, Audience, "a", new Dictionary<string, object> { ["scp"] = new[] { "orders:read" }, ["tier"] = "bronze" }), rule);
        Assert.Equal(403, wrongTier.Status);
        Assert.Contains("claim tier is not one of gold, silver", wrongTier.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARotatedKey_IsTakenUp_AndTheOldOnesTokensRefused()
    {
        using var next = new TestTokens("k2");
        string oldToken = _issuer.Create(Issuer, Audience, "a");
        _authenticator.Use(next.Jwks);
        Assert.True((await Check(next.Create(Issuer, Audience, "a"))).Ok);
        JwtVerdict old = await Check(oldToken);
        Assert.Equal((401, "the token is signed with a key this provider does not publish"), (old.Status, old.Reason));
    }

    public void Dispose()
    {
        _authenticator.Dispose();
        _issuer.Dispose();
        _stranger.Dispose();
    }
}
