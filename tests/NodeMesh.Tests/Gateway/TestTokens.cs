using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace NodeMesh.Tests.Gateway;

/// <summary>An issuer for the tests: an EC P-256 key with a key id, its JWKS, and tokens it signs (Microsoft.IdentityModel).</summary>
internal sealed class TestTokens : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestTokens(string keyId) => KeyId = keyId;

    public string KeyId { get; }

    /// <summary>The JWKS that publishes the public key.</summary>
    public string Jwks
    {
        get
        {
            ECParameters p = _key.ExportParameters(includePrivateParameters: false);
            return $$"""{ "keys": [ { "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "{{KeyId}}", "x": "{{Base64UrlEncoder.Encode(p.Q.X)}}", "y": "{{Base64UrlEncoder.Encode(p.Q.Y)}}" } ] }""";
        }
    }

    /// <summary>A signed token; <paramref name="lifetime"/> from now (negative: already expired), <paramref name="notBefore"/> from now.</summary>
    public string Create(string issuer, string audience, string subject, IDictionary<string, object>? claims = null, TimeSpan? lifetime = null, TimeSpan? notBefore = null, bool withKeyId = true)
    {
        DateTime now = DateTime.UtcNow;
        DateTime nbf = now + (notBefore ?? TimeSpan.FromMinutes(-1));
        DateTime exp = now + (lifetime ?? TimeSpan.FromMinutes(10));
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            Subject = new System.Security.Claims.ClaimsIdentity([new System.Security.Claims.Claim("sub", subject)]),
            Claims = claims,
            IssuedAt = nbf < exp ? nbf : exp.AddMinutes(-1),
            NotBefore = nbf < exp ? nbf : exp.AddMinutes(-1),
            Expires = exp,
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(_key) { KeyId = withKeyId ? KeyId : null }, SecurityAlgorithms.EcdsaSha256),
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }

    public void Dispose() => _key.Dispose();
}
