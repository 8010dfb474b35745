using System.Collections.Immutable;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NodeMesh.Discovery;

namespace NodeMesh.Consumers;

/// <summary>
/// Consumers in the registry's etcd, one key each (<c>PREFIX/consumers/NAME</c>): listed at start, then watched, so
/// a consumer made or a key revoked on any node is in force on every node's gateway within the watch's delay.
/// Changes are etcd transactions on the key's revision, so two nodes changing one consumer never lose either
/// change. While etcd is unreachable the last consumers read stay in force (and changes fail with why).
/// </summary>
internal sealed partial class ConsumerEtcdStore : IConsumerStore
{
    private const int Attempts = 5;

    private readonly EtcdStore _store;
    private readonly string _prefix;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _applying = new(1, 1);
    private ImmutableSortedDictionary<string, (ConsumerRecord Record, long Revision)> _records = ImmutableSortedDictionary.Create<string, (ConsumerRecord, long)>(StringComparer.Ordinal);
    private volatile ConsumerDirectory _current = ConsumerDirectory.NotLoaded;
    private long _revision;
    private Task _watching = Task.CompletedTask;

    public ConsumerEtcdStore(EtcdStore store, string registryPrefix, ILogger logger)
    {
        _store = store;
        _prefix = RegistryKey.ConsumersPrefix(registryPrefix);
        _logger = logger;
    }

    public string Describe => $"etcd under {_prefix}";

    public ConsumerDirectory Current => _current;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _watching = Task.Run(() => WatchLoopAsync(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task<ConsumerRecord?> ChangeAsync(string name, Func<ConsumerRecord?, ConsumerRecord?> change, CancellationToken cancellationToken)
    {
        string key = _prefix + name;
        for (int attempt = 1; attempt <= Attempts; attempt++)
        {
            (ReadOnlyMemory<byte>? value, long modRevision) read;
            try
            {
                read = await _store.GetAsync(key, cancellationToken);
            }
            catch (Exception ex) when (EtcdRegistrySource.IsStoreFailure(ex) && !cancellationToken.IsCancellationRequested)
            {
                throw new ConsumerStoreException($"cannot read consumer {name} from etcd: {ex.Message}", ex);
            }

            ConsumerRecord? existing = read.value is { } bytes ? Parse(key, bytes.Span, out _) : null;
            ConsumerRecord? changed = change(existing);
            long revision;
            try
            {
                revision = await _store.CompareAndSwapAsync(key, read.modRevision,
                    changed is null ? null : JsonSerializer.SerializeToUtf8Bytes(changed, ConsumerJsonContext.Default.ConsumerRecord), cancellationToken);
            }
            catch (Exception ex) when (EtcdRegistrySource.IsStoreFailure(ex) && !cancellationToken.IsCancellationRequested)
            {
                throw new ConsumerStoreException($"cannot write consumer {name} to etcd: {ex.Message}", ex);
            }

            if (revision > 0)
            {
                // In force here at once; the watch brings the same change again, which finds it already applied.
                await ApplyAsync(name, changed, revision);
                return changed;
            }
        }

        throw new ConsumerStoreException($"consumer {name} changed {Attempts} times while this change was made; try again");
    }

    private async Task WatchLoopAsync(CancellationToken stopping)
    {
        TimeSpan backoff = TimeSpan.Zero;
        bool listed = false;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                if (!listed)
                {
                    StoreListing listing = await _store.ListAsync(_prefix, stopping);
                    await ListedAsync(listing);
                    listed = true;
                    Log.Listed(_logger, _current.Count, listing.Revision);
                }

                await foreach (StoreChanges changes in _store.WatchAsync(_prefix, Volatile.Read(ref _revision) + 1, stopping))
                {
                    foreach (StoreEvent change in changes.Events)
                    {
                        string name = change.Key[_prefix.Length..];
                        string? error = null;
                        ConsumerRecord? record = change.Kind == StoreEventKind.Put ? Parse(change.Key, change.Value.Span, out error) : null;
                        if (change.Kind == StoreEventKind.Put && record is null)
                        {
                            Log.Refused(_logger, change.Key, error!);
                            continue;
                        }

                        await ApplyAsync(name, record, change.Revision);
                    }

                    Volatile.Write(ref _revision, Math.Max(Volatile.Read(ref _revision), changes.Revision));
                    backoff = TimeSpan.Zero;
                }
            }
            catch (StoreCompactedException)
            {
                listed = false;
            }
            catch (Exception ex) when (!stopping.IsCancellationRequested && EtcdRegistrySource.IsStoreFailure(ex))
            {
                backoff = backoff == TimeSpan.Zero ? TimeSpan.FromMilliseconds(200) : TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
                Log.WatchFailed(_logger, _prefix, ex.Message, backoff.TotalSeconds);
                try
                {
                    await Task.Delay(backoff, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task ListedAsync(StoreListing listing)
    {
        ImmutableSortedDictionary<string, (ConsumerRecord, long)>.Builder records = ImmutableSortedDictionary.CreateBuilder<string, (ConsumerRecord, long)>(StringComparer.Ordinal);
        foreach ((string key, ReadOnlyMemory<byte> value) in listing.Entries)
        {
            if (Parse(key, value.Span, out string? error) is { } record)
            {
                records[record.Name] = (record, listing.Revision);
            }
            else
            {
                Log.Refused(_logger, key, error!);
            }
        }

        await _applying.WaitAsync();
        try
        {
            _records = records.ToImmutable();
            Volatile.Write(ref _revision, listing.Revision);
            _current = new ConsumerDirectory(_records.Values.Select(r => r.Item1));
        }
        finally
        {
            _applying.Release();
        }
    }

    /// <summary>A change at <paramref name="revision"/>, unless the consumer is already known at a later one.</summary>
    private async Task ApplyAsync(string name, ConsumerRecord? record, long revision)
    {
        await _applying.WaitAsync();
        try
        {
            if (_records.TryGetValue(name, out (ConsumerRecord Record, long Revision) known) && known.Revision >= revision)
            {
                return;
            }

            // A deletion is remembered at its revision too, so an older put arriving late cannot bring the consumer back.
            _records = record is null ? _records.SetItem(name, (Tombstone(name), revision)) : _records.SetItem(name, (record, revision));
            _current = new ConsumerDirectory(_records.Values.Where(r => r.Record.State != DeletedState).Select(r => r.Record), loaded: _current.Loaded || _revision > 0);
        }
        finally
        {
            _applying.Release();
        }
    }

    private const string DeletedState = "deleted";

    private static ConsumerRecord Tombstone(string name) => new() { Name = name, State = DeletedState };

    private ConsumerRecord? Parse(string key, ReadOnlySpan<byte> value, out string? error)
    {
        try
        {
            ConsumerRecord? record = JsonSerializer.Deserialize(value, ConsumerJsonContext.Default.ConsumerRecord);
            error = ConsumerRules.RecordError(record);
            if (error is null && record!.Name != key[_prefix.Length..])
            {
                error = $"its name {record.Name} is not its key's";
            }

            return error is null ? record : null;
        }
        catch (JsonException ex)
        {
            error = ex.Message;
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _watching.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _store.DisposeAsync();
        _stopping.Dispose();
        _applying.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1601, Level = LogLevel.Information, Message = "consumers: {Count} read from etcd at revision {Revision}, watching for changes")]
        public static partial void Listed(ILogger logger, int count, long revision);

        [LoggerMessage(EventId = 1602, Level = LogLevel.Warning, Message = "consumers: entry {Key} refused: {Reason}")]
        public static partial void Refused(ILogger logger, string key, string reason);

        [LoggerMessage(EventId = 1603, Level = LogLevel.Warning, Message = "consumers: cannot read {Prefix} from etcd ({Reason}); the consumers last read stay in force; retrying in {Seconds} s")]
        public static partial void WatchFailed(ILogger logger, string prefix, string reason, double seconds);
    }
}
