using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Identity;

/// <summary>
/// Certificates that an external issuer (cert-manager, SPIRE's helper, a script) keeps fresh in a directory:
/// <code>
/// &lt;dir&gt;/bundle.pem                                   the roots to trust (one or more CA certificates)
/// &lt;dir&gt;/node/cert.pem, key.pem                       what the tunnel listener presents
/// &lt;dir&gt;/workloads/&lt;namespace&gt;/&lt;service-account&gt;/cert.pem, key.pem   one directory per workload identity
/// </code>
/// <c>cert.pem</c> holds the leaf first, then any intermediates; <c>key.pem</c> its private key (PKCS#8, SEC1
/// or PKCS#1 PEM). A workload's leaf must carry exactly one URI SAN, the identity its directory names; the
/// node's, one SPIFFE id of the trust domain.
/// Changes are picked up without a restart: a file watcher triggers a reload shortly after a write, and a
/// periodic poll catches what the watcher misses (network file systems, exhausted inotify watches). A file
/// that is missing, malformed, mismatched with its key or expired is refused with a logged reason, and the
/// last good certificate keeps serving until it expires (an issuer that writes cert and key one after the
/// other is read correctly once both are written).
/// </summary>
internal sealed partial class FileCertificates : ICertificateProvider
{
    public const string BundleFile = "bundle.pem";
    public const string CertFile = "cert.pem";
    public const string KeyFile = "key.pem";
    public const string NodeDir = "node";
    public const string WorkloadsDir = "workloads";
    public const int MaxFileBytes = 1024 * 1024;

    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(200);

    private readonly string _dir;
    private readonly string _trustDomain;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly TrustBundle _bundle;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Lock _reloadLock = new();
    private readonly FileSystemWatcher? _watcher;
    private readonly ITimer _debounce;
    private readonly ITimer _poll;
    private byte[] _bundleDigest;
    private string? _bundleError;
    private int _disposed;

    /// <summary>Reads the bundle (required: throws <see cref="InvalidDataException"/> if it is missing or malformed) and starts watching <paramref name="dir"/>.</summary>
    /// <param name="pollInterval">How often every file in use is re-read, whatever the watcher reports.</param>
    /// <param name="watch">False to rely on polling alone (tests; file systems without inotify).</param>
    public FileCertificates(string dir, string trustDomain, TimeSpan pollInterval, ILogger<FileCertificates> logger, bool watch = true, TimeProvider? time = null)
    {
        _dir = Path.GetFullPath(dir);
        _trustDomain = trustDomain;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        string bundlePath = Path.Combine(_dir, BundleFile);
        byte[] bundleBytes = ReadBounded(bundlePath);
        _bundle = new TrustBundle(ParseBundle(bundlePath, bundleBytes));
        _bundleDigest = SHA256.HashData(bundleBytes);
        NodeIdentityPath = Path.Combine(_dir, NodeDir);

        _debounce = _time.CreateTimer(_ => Reload(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _poll = _time.CreateTimer(_ => Reload(), null, pollInterval, pollInterval);
        if (!watch)
        {
            return;
        }

        try
        {
            _watcher = new FileSystemWatcher(_dir)
            {
                IncludeSubdirectories = true,
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            _watcher.Changed += OnFileEvent;
            _watcher.Created += OnFileEvent;
            _watcher.Deleted += OnFileEvent;
            _watcher.Renamed += OnFileEvent;
            _watcher.Error += OnWatcherError;
            _watcher.EnableRaisingEvents = true;
        }
        catch (Exception ex) when (ex is IOException or ArgumentException or PlatformNotSupportedException)
        {
            _watcher?.Dispose();
            _watcher = null;
            Log.WatchFailed(_logger, _dir, ex.Message, pollInterval);
        }
    }

    /// <summary>Raised after the certificate of an identity was replaced from its files.</summary>
    public event Action<SpiffeId>? CertificateChanged;

    /// <summary>Raised when a file was refused (path, reason); the last good certificate or bundle stays in use.</summary>
    public event Action<string, string>? LoadFailed;

    public X509Certificate2Collection TrustBundle => _bundle.Roots;

    public TrustBundle Bundle => _bundle;

    /// <summary>The directory holding the node certificate.</summary>
    public string NodeIdentityPath { get; }

    /// <summary>The directory a workload identity's files are read from.</summary>
    public static string DirectoryFor(string dir, SpiffeId identity) => Path.Combine(dir, WorkloadsDir, identity.Namespace, identity.ServiceAccount);

    public ValueTask<SslStreamCertificateContext> GetNodeCertificateAsync(CancellationToken cancellationToken) =>
        ValueTask.FromResult(Get(NodeIdentityPath, expected: null));

    public ValueTask<SslStreamCertificateContext> GetWorkloadCertificateAsync(SpiffeId identity, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Get(DirectoryFor(_dir, identity), identity));

    /// <summary>Stops reading the files of <paramref name="identity"/> (its last workload left the node).</summary>
    public void Forget(SpiffeId identity)
    {
        lock (_reloadLock)
        {
            _entries.TryRemove(DirectoryFor(_dir, identity), out _);
        }
    }

    /// <summary>Every certificate read so far (and the bundle's last error, if any, under the trust domain's name).</summary>
    public IReadOnlyList<CertificateStatus> Status()
    {
        List<CertificateStatus> status = [.. _entries.Values.Select(e => new CertificateStatus(
            e.Current?.Identity ?? e.Expected ?? new SpiffeId(_trustDomain, MeshIdentities.Namespace, NodeDir), e.Current?.NotAfter, e.LastError) { Leaf = e.Current?.Context.TargetCertificate })];
        return status;
    }

    /// <summary>The reason the bundle file was last refused, or null if the last read was good.</summary>
    public string? BundleError => _bundleError;

    /// <summary>Re-reads the bundle and every certificate in use. Called by the watcher and the poll; callable directly.</summary>
    public void Reload()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        lock (_reloadLock)
        {
            ReloadBundle();
            foreach (Entry entry in _entries.Values)
            {
                Load(entry);
            }
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _watcher?.Dispose();
        _debounce.Dispose();
        _poll.Dispose();
    }

    private SslStreamCertificateContext Get(string path, SpiffeId? expected)
    {
        if (!_entries.TryGetValue(path, out Entry? entry))
        {
            lock (_reloadLock)
            {
                if (!_entries.TryGetValue(path, out entry))
                {
                    entry = new Entry(path, expected);
                    Load(entry);
                    _entries[path] = entry;
                }
            }
        }

        Loaded? current = entry.Current;
        if (current is not null && _time.GetUtcNow() < current.NotAfter)
        {
            return current.Context;
        }

        // Nothing usable: look again (files may have appeared since), but at most once a second per identity.
        long now = Environment.TickCount64;
        long last = Volatile.Read(ref entry.LastAttemptTicks);
        if (now - last >= 1000 && Interlocked.CompareExchange(ref entry.LastAttemptTicks, now, last) == last)
        {
            lock (_reloadLock)
            {
                Load(entry);
            }

            current = entry.Current;
            if (current is not null && _time.GetUtcNow() < current.NotAfter)
            {
                return current.Context;
            }
        }

        string what = expected?.Uri ?? "the node";
        string why = entry.LastError ?? (current is null ? "not loaded" : $"its certificate expired at {current.NotAfter:u}");
        throw new CertificateUnavailableException($"no certificate for {what} in {path}: {why}");
    }

    private void ReloadBundle()
    {
        string path = Path.Combine(_dir, BundleFile);
        try
        {
            byte[] bytes = ReadBounded(path);
            byte[] digest = SHA256.HashData(bytes);
            if (digest.AsSpan().SequenceEqual(_bundleDigest))
            {
                return;
            }

            _bundleDigest = digest;
            X509Certificate2Collection roots = ParseBundle(path, bytes);
            _bundleError = null;
            if (_bundle.Update(roots))
            {
                Log.BundleChanged(_logger, path, roots.Count);
            }
        }
        catch (Exception ex)
        {
            Refused(path, ex.Message, ref _bundleError);
        }
    }

    /// <summary>Reads an entry's files; swaps in the certificate if they changed and are good, keeps the last good one otherwise.</summary>
    private void Load(Entry entry)
    {
        string certPath = Path.Combine(entry.Path, CertFile);
        string keyPath = Path.Combine(entry.Path, KeyFile);
        try
        {
            byte[] cert = ReadBounded(certPath);
            byte[] key = ReadBounded(keyPath);
            byte[] digest = SHA256.HashData([.. cert, .. key]);
            if (entry.Digest is not null && digest.AsSpan().SequenceEqual(entry.Digest))
            {
                return;
            }

            entry.Digest = digest;
            Loaded loaded = Parse(entry, certPath, System.Text.Encoding.UTF8.GetString(cert), System.Text.Encoding.UTF8.GetString(key));
            entry.Current = loaded;
            entry.LastError = null;
            Log.Loaded(_logger, loaded.Identity.Uri, entry.Path, loaded.NotAfter);
            CertificateChanged?.Invoke(loaded.Identity);
        }
        catch (Exception ex)
        {
            // Runs on timers and the watcher's thread: nothing may escape, and the last good certificate stays.
            string? error = entry.LastError;
            Refused(entry.Path, ex.Message, ref error);
            entry.LastError = error;
        }
    }

    private void Refused(string path, string error, ref string? lastError)
    {
        if (lastError != error)
        {
            Log.Refused(_logger, path, error);
            LoadFailed?.Invoke(path, error);
        }

        lastError = error;
    }

    private Loaded Parse(Entry entry, string certPath, string certPem, string keyPem)
    {
        X509Certificate2Collection all = [];
        X509Certificate2 leaf;
        try
        {
            all.ImportFromPem(certPem);
            if (all.Count == 0)
            {
                throw new InvalidDataException($"{certPath} holds no certificate");
            }

            // Loads the first certificate with the key, and fails if the key is not the certificate's.
            using X509Certificate2 withKey = X509Certificate2.CreateFromPem(certPem, keyPem);
            leaf = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            // CreateFromPem reports a key that is not the certificate's as an ArgumentException.
            throw new InvalidDataException($"{certPath} and its {KeyFile} are not a matching certificate and key in PEM: {ex.Message}", ex);
        }

        try
        {
            SpiffeId identity = ReadIdentity(leaf, certPath, entry.Expected);
            DateTimeOffset now = _time.GetUtcNow();
            DateTimeOffset notAfter = leaf.NotAfter.ToUniversalTime();
            if (now >= notAfter)
            {
                throw new InvalidDataException($"{certPath} expired at {notAfter:u}");
            }

            if (leaf.NotBefore.ToUniversalTime() > now + TimeSpan.FromMinutes(5))
            {
                throw new InvalidDataException($"{certPath} is not valid before {leaf.NotBefore.ToUniversalTime():u}");
            }

            X509Certificate2Collection chain = [.. all.Skip(1)];
            return new Loaded(SslStreamCertificateContext.Create(leaf, chain, offline: true), identity, notAfter);
        }
        catch
        {
            leaf.Dispose();
            throw;
        }
    }

    private SpiffeId ReadIdentity(X509Certificate2 leaf, string certPath, SpiffeId? expected)
    {
        List<string> uris;
        try
        {
            uris = PeerCertificateVerifier.ReadUriSans(leaf);
        }
        catch (System.Formats.Asn1.AsnContentException ex)
        {
            throw new InvalidDataException($"{certPath}: malformed subject alternative name: {ex.Message}", ex);
        }

        if (uris.Count != 1)
        {
            throw new InvalidDataException($"{certPath} must carry exactly one URI SAN, found {uris.Count}");
        }

        if (!SpiffeId.TryParse(uris[0], out SpiffeId? identity, out string? error))
        {
            throw new InvalidDataException($"{certPath}: {error}");
        }

        if (identity.TrustDomain != _trustDomain)
        {
            throw new InvalidDataException($"{certPath} is for {identity}, not in trust domain {_trustDomain}");
        }

        if (expected is not null && identity != expected)
        {
            throw new InvalidDataException($"{certPath} is for {identity}, but its directory is for {expected}");
        }

        return identity;
    }

    private static X509Certificate2Collection ParseBundle(string path, byte[] bytes)
    {
        try
        {
            return Identity.TrustBundle.ParsePem(System.Text.Encoding.UTF8.GetString(bytes));
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException($"{path}: {ex.Message}", ex);
        }
    }

    private static byte[] ReadBounded(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new InvalidDataException($"{path} does not exist");
        }

        if (info.Length > MaxFileBytes)
        {
            throw new InvalidDataException($"{path} is larger than {MaxFileBytes} bytes");
        }

        return File.ReadAllBytes(path);
    }

    private void OnFileEvent(object sender, FileSystemEventArgs e) => ScheduleReload();

    private void OnWatcherError(object sender, ErrorEventArgs e)
    {
        Log.WatchError(_logger, _dir, e.GetException().Message);
        ScheduleReload();
    }

    /// <summary>Writers touch several files in a row; reload once they have settled.</summary>
    private void ScheduleReload()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            _debounce.Change(Debounce, Timeout.InfiniteTimeSpan);
        }
    }

    private sealed record Loaded(SslStreamCertificateContext Context, SpiffeId Identity, DateTimeOffset NotAfter);

    private sealed class Entry(string path, SpiffeId? expected)
    {
        public string Path { get; } = path;

        /// <summary>The identity the directory stands for; null for the node directory.</summary>
        public SpiffeId? Expected { get; } = expected;

        public volatile Loaded? Current;
        public volatile string? LastError;

        /// <summary>When <see cref="Get"/> last re-read the files of an entry with nothing usable.</summary>
        public long LastAttemptTicks = Environment.TickCount64;

        /// <summary>Digest of the cert and key bytes last parsed (good or not), so an unchanged pair is not parsed again.</summary>
        public byte[]? Digest;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 740, Level = LogLevel.Information, Message = "certificate for {Identity} loaded from {Path}, valid until {NotAfter:u}")]
        public static partial void Loaded(ILogger logger, string identity, string path, DateTimeOffset notAfter);

        [LoggerMessage(EventId = 741, Level = LogLevel.Error, Message = "refused {Path}: {Error}; the last good certificate or bundle stays in use")]
        public static partial void Refused(ILogger logger, string path, string error);

        [LoggerMessage(EventId = 742, Level = LogLevel.Information, Message = "trust bundle reloaded from {Path}: {Count} roots")]
        public static partial void BundleChanged(ILogger logger, string path, int count);

        [LoggerMessage(EventId = 743, Level = LogLevel.Warning, Message = "cannot watch {Dir} ({Error}); changes are picked up by polling every {Interval}")]
        public static partial void WatchFailed(ILogger logger, string dir, string error, TimeSpan interval);

        [LoggerMessage(EventId = 744, Level = LogLevel.Warning, Message = "watching {Dir} failed: {Error}; reloading")]
        public static partial void WatchError(ILogger logger, string dir, string error);
    }
}
