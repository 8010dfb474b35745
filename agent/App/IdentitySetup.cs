using System.Net;
using Microsoft.Extensions.Logging;
using NodeMesh.Config;
using NodeMesh.Identity;

namespace NodeMesh.App;

/// <summary>Builds this agent's certificate source from the configuration (certificates.source).</summary>
internal static class IdentitySetup
{
    /// <summary>The provider, and the CA itself when this agent holds it (embedded source or CA role).</summary>
    internal sealed record Certificates(ICertificateProvider Provider, CertificateAuthority? Authority);

    public static Certificates CreateCertificates(AgentConfig config, ILoggerFactory loggers)
    {
        SpiffeId node = MeshIdentities.Node(config.TrustDomain, config.Node.Name);
        switch (config.Certificates.Source)
        {
            case "ca":
            {
                TrustBundle bundle;
                try
                {
                    bundle = TrustBundle.FromFile(config.Ca.TrustBundle);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or System.Security.Cryptography.CryptographicException)
                {
                    throw new StartupException($"ca.trustBundle: cannot read {config.Ca.TrustBundle}: {ex.Message}", ex);
                }

                var client = new CaClient(IPEndPoint.Parse(config.Ca.Server), config.TrustDomain, () => bundle.Roots, TimeSpan.FromSeconds(10));
                string tokenFile = config.Ca.JoinTokenFile;
                var provider = new CaClientCertificates(client, config.Node.Name, () => ReadToken(tokenFile), bundle, new RenewalSchedule(),
                    loggers.CreateLogger<CaClientCertificates>(), store: new NodeIdentityStore(config.StateDir));
                return new Certificates(provider, null);
            }

            case "files":
                try
                {
                    return new Certificates(
                        new FileCertificates(config.Certificates.Dir, config.TrustDomain, config.Certificates.PollInterval, loggers.CreateLogger<FileCertificates>()),
                        null);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or System.Security.Cryptography.CryptographicException)
                {
                    throw new StartupException($"certificates.dir: {ex.Message}", ex);
                }

            default:
            {
                CertificateAuthority ca;
                try
                {
                    ca = CertificateAuthority.Load(config.Ca.Dir);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    throw new StartupException($"ca.dir: cannot load the CA in {config.Ca.Dir}: {ex.Message}", ex);
                }

                var provider = new EmbeddedCaCertificates(ca, config.Ca.CertificateTtl, node);
                return new Certificates(provider, ca);
            }
        }
    }

    /// <summary>
    /// The join token, read only when the node must join (no valid stored node certificate); the operator may
    /// write it after the agent started. A missing or empty file fails the join naming the file.
    /// </summary>
    private static string ReadToken(string path)
    {
        const string Create = "create one with 'nodemesh ca token create --node NAME' on the CA";
        string token;
        try
        {
            token = File.ReadAllText(path).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CertificateUnavailableException($"no valid node certificate, and the join token file {path} (ca.joinTokenFile) cannot be read: {ex.Message}; {Create}");
        }

        return token.Length > 0 ? token : throw new CertificateUnavailableException($"no valid node certificate, and the join token file {path} (ca.joinTokenFile) is empty; {Create}");
    }
}
