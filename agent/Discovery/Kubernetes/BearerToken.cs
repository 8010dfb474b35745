using System.Net.Http.Headers;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// The bearer token requests carry: a fixed one (a kubeconfig's token), or a file read again for each request, so
/// a projected service-account token that the kubelet rotates is used from its first request on (a stat and a
/// few hundred bytes per list or watch: a handful a minute).
/// </summary>
internal sealed class BearerToken
{
    private readonly string? _file;
    private readonly string? _fixed;
    private readonly k8s.Authentication.ITokenProvider? _provider;

    private BearerToken(string? file, string? token, k8s.Authentication.ITokenProvider? provider)
    {
        _file = file;
        _fixed = token;
        _provider = provider;
    }

    public static readonly BearerToken None = new(null, null, null);

    public static BearerToken FromFile(string path) => new(path, null, null);

    public static BearerToken Fixed(string token) => new(null, token, null);

    /// <summary>A kubeconfig's token provider (tokenFile, exec plug-in).</summary>
    public static BearerToken From(k8s.Authentication.ITokenProvider provider) => new(null, null, provider);

    public string? File => _file;

    /// <summary>The Authorization header now; null: none.</summary>
    /// <exception cref="IOException">The token file cannot be read.</exception>
    public async ValueTask<AuthenticationHeaderValue?> HeaderAsync(CancellationToken cancellationToken)
    {
        if (_provider is not null)
        {
            return await _provider.GetAuthenticationHeaderAsync(cancellationToken);
        }

        string? token = _fixed;
        if (_file is not null)
        {
            try
            {
                token = (await System.IO.File.ReadAllTextAsync(_file, cancellationToken)).Trim();
            }
            catch (UnauthorizedAccessException ex)
            {
                throw new IOException($"cannot read the token file {_file}: {ex.Message}", ex);
            }
        }

        return string.IsNullOrEmpty(token) ? null : new AuthenticationHeaderValue("Bearer", token);
    }
}
