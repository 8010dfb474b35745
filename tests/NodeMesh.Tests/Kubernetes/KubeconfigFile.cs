namespace NodeMesh.Tests.Kubernetes;

/// <summary>A kubeconfig for a test's API server: one cluster, one user with a bearer token, one current context.</summary>
internal static class KubeconfigFile
{
    public static string Write(string directory, Uri server, string? token, string? caFile = null)
    {
        Directory.CreateDirectory(directory);
        string path = Path.Combine(directory, "kubeconfig");
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: test
              cluster:
                server: {server.GetLeftPart(UriPartial.Authority)}
            {(caFile is null ? "" : $"    certificate-authority: {caFile}")}
            contexts:
            - name: test
              context:
                cluster: test
                user: test
            current-context: test
            users:
            - name: test
              user:
            {(token is null ? "    {}" : $"    token: {token}")}
            """);
        return path;
    }
}
