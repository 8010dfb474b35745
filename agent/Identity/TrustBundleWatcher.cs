using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Identity;

/// <summary>
/// For an agent that holds the CA (embedded source or CA role): re-reads <c>trust-bundle.pem</c> in the CA
/// directory when it changes, so roots can be added (and later removed) during a rotation without a restart.
/// New handshakes use the new bundle; established tunnels are not disturbed. A malformed file is refused and
/// the current bundle kept.
/// </summary>
internal sealed partial class TrustBundleWatcher(CertificateAuthority? authority, string caDir, ILogger<TrustBundleWatcher> logger) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (authority is null)
        {
            return;
        }

        string path = Path.Combine(caDir, CertificateAuthority.ExtraRootsFile);
        (DateTime, long) stamp = Stamp(path);
        using var timer = new PeriodicTimer(Interval);
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await timer.WaitForNextTickAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            (DateTime, long) next = Stamp(path);
            if (next == stamp)
            {
                continue;
            }

            stamp = next;
            try
            {
                if (authority.ReloadTrustBundle())
                {
                    Log.Reloaded(logger, path, authority.TrustBundle.Roots.Count);
                }
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Log.Refused(logger, path, ex.Message);
            }
        }
    }

    private static (DateTime, long) Stamp(string path)
    {
        var info = new FileInfo(path);
        return info.Exists ? (info.LastWriteTimeUtc, info.Length) : (DateTime.MinValue, -1);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 760, Level = LogLevel.Information, Message = "trust bundle reloaded from {Path}: {Count} roots trusted")]
        public static partial void Reloaded(ILogger logger, string path, int count);

        [LoggerMessage(EventId = 761, Level = LogLevel.Error, Message = "trust bundle {Path} refused, the current roots stay trusted: {Error}")]
        public static partial void Refused(ILogger logger, string path, string error);
    }
}
