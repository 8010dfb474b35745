using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using k8s.Models;
using NodeMesh.Config;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>
/// HTTP to the API server: its address, the only CA its certificate is checked against (no system roots, no
/// downloads), the client certificate or bearer token. Errors come back as <see cref="KubernetesApiException"/>
/// with the server's Status message; a 401 or 403 names the resource and the RBAC verb it needs.
/// </summary>
internal sealed class KubernetesApiClient : IDisposable
{
    /// <summary>Where the kubelet mounts a pod's service account: token, ca.crt, namespace.</summary>
    public const string ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

    private readonly HttpClient _http;
    private readonly BearerToken _token;

    private KubernetesApiClient(Uri server, HttpMessageHandler handler, BearerToken token)
    {
        Server = server;
        _token = token;
        // No client-wide timeout: a watch is open for minutes. Lists get their own deadline.
        _http = new HttpClient(handler) { BaseAddress = server, Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("nodemesh", null));
        _http.DefaultRequestHeaders.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
    }

    public Uri Server { get; }

    /// <summary>The client for discovery.kubernetes: its kubeconfig, else the pod's service account in <paramref name="serviceAccountDir"/>.</summary>
    /// <exception cref="KubernetesSetupException">Neither works.</exception>
    public static KubernetesApiClient Create(KubernetesConfig config, Func<string, string?> environment, string serviceAccountDir = ServiceAccountDir) =>
        string.IsNullOrEmpty(config.Kubeconfig) ? InCluster(environment, serviceAccountDir) : FromKubeconfig(config.Kubeconfig);

    private static KubernetesApiClient InCluster(Func<string, string?> environment, string dir)
    {
        string? host = environment("KUBERNETES_SERVICE_HOST");
        string? port = environment("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port))
        {
            throw new KubernetesSetupException("discovery.kubernetes: not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set) and no discovery.kubernetes.kubeconfig is given");
        }

        string token = Path.Combine(dir, "token");
        string ca = Path.Combine(dir, "ca.crt");
        if (!File.Exists(token))
        {
            throw new KubernetesSetupException($"discovery.kubernetes: in-cluster, but there is no service-account token at {token} (automountServiceAccountToken: false?)");
        }

        X509Certificate2Collection roots = LoadCa(ca, "the service account's ca.crt");
        string authority = IPAddress.TryParse(host, out IPAddress? ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{host}]" : host;
        return new KubernetesApiClient(new Uri($"https://{authority}:{port}/"), Handler(roots, null, skipVerify: false, null), BearerToken.FromFile(token));
    }

    private static KubernetesApiClient FromKubeconfig(string path)
    {
        k8s.KubernetesClientConfiguration kube;
        try
        {
            kube = k8s.KubernetesClientConfiguration.BuildConfigFromConfigFile(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or k8s.Exceptions.KubeConfigException or YamlDotNet.Core.YamlException or FormatException)
        {
            throw new KubernetesSetupException($"discovery.kubernetes.kubeconfig: cannot use {path}: {ex.Message}", ex);
        }

        if (!Uri.TryCreate(kube.Host, UriKind.Absolute, out Uri? server) || server.Scheme is not ("http" or "https"))
        {
            throw new KubernetesSetupException($"discovery.kubernetes.kubeconfig: {path}: the cluster's server '{kube.Host}' is not an http(s) URL");
        }

        X509Certificate2? client = null;
        try
        {
            client = ClientCertificate(kube);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Cryptography.CryptographicException or FormatException)
        {
            throw new KubernetesSetupException($"discovery.kubernetes.kubeconfig: {path}: cannot load the client certificate: {ex.Message}", ex);
        }

        BearerToken token = kube.TokenProvider is { } provider ? BearerToken.From(provider)
            : !string.IsNullOrEmpty(kube.AccessToken) ? BearerToken.Fixed(kube.AccessToken) : BearerToken.None;
        return new KubernetesApiClient(server, Handler(kube.SslCaCerts, client, kube.SkipTlsVerify, kube.TlsServerName), token);
    }

    private static X509Certificate2Collection LoadCa(string file, string what)
    {
        try
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(file);
            return roots.Count > 0 ? roots : throw new KubernetesSetupException($"discovery.kubernetes: {what} ({file}) holds no certificate");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            throw new KubernetesSetupException($"discovery.kubernetes: cannot read {what} ({file}): {ex.Message}", ex);
        }
    }

    private static X509Certificate2? ClientCertificate(k8s.KubernetesClientConfiguration kube)
    {
        string? certPem = !string.IsNullOrEmpty(kube.ClientCertificateData) ? System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(kube.ClientCertificateData))
            : !string.IsNullOrEmpty(kube.ClientCertificateFilePath) ? File.ReadAllText(kube.ClientCertificateFilePath) : null;
        string? keyPem = !string.IsNullOrEmpty(kube.ClientCertificateKeyData) ? System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(kube.ClientCertificateKeyData))
            : !string.IsNullOrEmpty(kube.ClientKeyFilePath) ? File.ReadAllText(kube.ClientKeyFilePath) : null;
        if (certPem is null || keyPem is null)
        {
            return null;
        }

        using X509Certificate2 loaded = X509Certificate2.CreateFromPem(certPem, keyPem);
        // An ephemeral key cannot be used by the TLS stack on every platform: export and load it as PKCS#12.
        return X509CertificateLoader.LoadPkcs12(loaded.Export(X509ContentType.Pkcs12), null);
    }

    private static SocketsHttpHandler Handler(X509Certificate2Collection? roots, X509Certificate2? client, bool skipVerify, string? serverName)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            // Four long watches at once, and lists beside them.
            MaxConnectionsPerServer = 16,
            // A silent half-open connection (the server's node gone) is found by the watch's own idle deadline.
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
        };
        handler.SslOptions.TargetHost = string.IsNullOrEmpty(serverName) ? null : serverName;
        if (client is not null)
        {
            handler.SslOptions.ClientCertificates = [client];
        }

        X509Certificate2Collection trust = roots ?? [];
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (skipVerify)
            {
                return true; // the kubeconfig asked for it (insecure-skip-tls-verify)
            }

            if (certificate is null || trust.Count == 0)
            {
                return false;
            }

            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(trust);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.DisableCertificateDownloads = true;
            X509Certificate2 leaf = certificate as X509Certificate2 ?? throw new InvalidOperationException("not an X509Certificate2");
            return chain.Build(leaf) && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) == 0;
        };
        return handler;
    }

    /// <summary>
    /// GET <paramref name="pathAndQuery"/>; with <paramref name="streaming"/> the body is left to be read as it
    /// arrives (a watch). A non-success status throws, the server's Status message in the exception.
    /// </summary>
    public async Task<HttpResponseMessage> GetAsync(string pathAndQuery, KubernetesResource resource, bool streaming, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, pathAndQuery);
        request.Headers.Authorization = await _token.HeaderAsync(cancellationToken);
        HttpResponseMessage response = await _http.SendAsync(request, streaming ? HttpCompletionOption.ResponseHeadersRead : HttpCompletionOption.ResponseContentRead, cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            return response;
        }

        using (response)
        {
            string body = await response.Content.ReadAsStringAsync(cancellationToken);
            string verb = streaming ? "watch" : "list";
            string said = StatusMessage(body) ?? response.ReasonPhrase ?? "";
            string message = response.StatusCode switch
            {
                HttpStatusCode.Unauthorized => $"401 Unauthorized on {verb} {resource.Name}: the API server refused the credentials{(_token.File is { } file ? $" (the token in {file})" : "")}: {said}",
                HttpStatusCode.Forbidden => $"403 Forbidden on {verb} {resource.Name}: the agent's identity needs RBAC verbs list and watch on {resource.Name} (apiGroup \"{resource.ApiGroup}\"), cluster-wide: {said}",
                _ => $"{(int)response.StatusCode} {response.ReasonPhrase} on {verb} {resource.Name}: {said}",
            };
            throw new KubernetesApiException(response.StatusCode, message);
        }
    }

    /// <summary>The message of a Status object, if <paramref name="body"/> is one.</summary>
    internal static string? StatusMessage(string body)
    {
        try
        {
            return JsonSerializer.Deserialize(body, KubernetesJsonContext.Default.V1Status) is { Message: { Length: > 0 } message } ? Bounded(message) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The server's words, readable in a log line: no control characters, at most 300 characters (RBAC messages run long).</summary>
    internal static string Bounded(string text)
    {
        string shortened = text.Length > 300 ? text[..300] + "…" : text;
        return string.Concat(shortened.Select(ch => char.IsControl(ch) ? '?' : ch));
    }

    public void Dispose() => _http.Dispose();
}
