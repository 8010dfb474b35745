using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.Consumers;

/// <summary>
/// Each consumer's requests through this node's gateway: today's (UTC) count, which a plan's daily quota is held
/// to, the total, the refusals and when it was last seen. Kept in the state directory (written every few seconds
/// while it changes, and at the stop), so a restart does not hand out the day's quota again.
/// </summary>
internal sealed partial class ConsumerUsage : IAsyncDisposable
{
    public const string FileName = "consumer-usage.json";
    private static readonly TimeSpan SaveEvery = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, Counter> _counters = new(StringComparer.Ordinal);
    private readonly string? _path;
    private readonly TimeProvider _time;
    private readonly Microsoft.Extensions.Logging.ILogger? _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _saving = Task.CompletedTask;
    private int _dirty;

    /// <param name="stateDir">Where the counts are kept; null: in memory only (tests).</param>
    public ConsumerUsage(string? stateDir, TimeProvider? time = null, Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        _time = time ?? TimeProvider.System;
        _logger = logger;
        if (stateDir is null)
        {
            return;
        }

        _path = Path.Combine(stateDir, FileName);
        Load();
        _saving = SaveLoopAsync(_stopping.Token);
    }

    /// <summary>
    /// Counts a request of <paramref name="consumer"/> if today's count is below <paramref name="dailyQuota"/> (0: no
    /// quota); false (and a refusal counted) when the quota is used up.
    /// </summary>
    public bool TryCount(string consumer, long dailyQuota)
    {
        DateTimeOffset now = _time.GetUtcNow();
        Counter counter = _counters.GetOrAdd(consumer, static _ => new Counter());
        bool counted;
        lock (counter)
        {
            long day = Day(now);
            if (counter.Day != day)
            {
                counter.Day = day;
                counter.Today = 0;
            }

            counted = dailyQuota <= 0 || counter.Today < dailyQuota;
            if (counted)
            {
                counter.Today++;
                counter.Total++;
            }
            else
            {
                counter.Refused++;
            }

            counter.LastSeen = now;
        }

        Volatile.Write(ref _dirty, 1);
        return counted;
    }

    /// <summary>A request refused by the consumer's plan limits (not its quota): counted as a refusal.</summary>
    public void Refused(string consumer)
    {
        Counter counter = _counters.GetOrAdd(consumer, static _ => new Counter());
        lock (counter)
        {
            counter.Refused++;
            counter.LastSeen = _time.GetUtcNow();
        }

        Volatile.Write(ref _dirty, 1);
    }

    /// <summary>How long until the quota's day ends (UTC midnight): a refused caller's Retry-After.</summary>
    public TimeSpan UntilTomorrow()
    {
        DateTimeOffset now = _time.GetUtcNow();
        return now.UtcDateTime.Date.AddDays(1) - now.UtcDateTime;
    }

    public ConsumerUsageInfo Of(string consumer, long dailyQuota)
    {
        DateTimeOffset now = _time.GetUtcNow();
        long today = Day(now);
        if (!_counters.TryGetValue(consumer, out Counter? counter))
        {
            return new ConsumerUsageInfo { Day = DayText(today), DailyQuota = dailyQuota > 0 ? dailyQuota : null };
        }

        lock (counter)
        {
            return new ConsumerUsageInfo
            {
                Day = DayText(today),
                RequestsToday = counter.Day == today ? counter.Today : 0,
                DailyQuota = dailyQuota > 0 ? dailyQuota : null,
                Requests = counter.Total,
                Refused = counter.Refused,
                LastSeen = counter.LastSeen,
            };
        }
    }

    /// <summary>A deleted consumer's counts go with it.</summary>
    public void Forget(string consumer)
    {
        if (_counters.TryRemove(consumer, out _))
        {
            Volatile.Write(ref _dirty, 1);
        }
    }

    private static long Day(DateTimeOffset now) => now.UtcTicks / TimeSpan.TicksPerDay;

    private static string DayText(long day) => new DateTime(day * TimeSpan.TicksPerDay, DateTimeKind.Utc).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);

    private void Load()
    {
        try
        {
            if (!File.Exists(_path))
            {
                return;
            }

            ConsumerUsageFile? file = JsonSerializer.Deserialize(File.ReadAllBytes(_path!), ConsumerJsonContext.Default.ConsumerUsageFile);
            foreach ((string name, ConsumerUsageInfo info) in file?.Consumers ?? new Dictionary<string, ConsumerUsageInfo>())
            {
                bool parsed = DateTime.TryParseExact(info.Day, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out DateTime day);
                _counters[name] = new Counter
                {
                    Day = parsed ? day.Ticks / TimeSpan.TicksPerDay : 0,
                    Today = parsed ? info.RequestsToday : 0,
                    Total = info.Requests,
                    Refused = info.Refused,
                    LastSeen = info.LastSeen,
                };
            }
        }
        catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
        {
            // Counts are not worth refusing to start over: they begin again (the quota is then generous for a day).
            _counters.Clear();
            if (_logger is not null)
            {
                Log.LoadFailed(_logger, _path!, ex.Message);
            }
        }
    }

    private async Task SaveLoopAsync(CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(SaveEvery);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping))
            {
                Save();
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping: saved once more by DisposeAsync.
        }
    }

    private void Save()
    {
        if (_path is null || Interlocked.Exchange(ref _dirty, 0) == 0)
        {
            return;
        }

        var consumers = new Dictionary<string, ConsumerUsageInfo>(StringComparer.Ordinal);
        foreach (string name in _counters.Keys)
        {
            consumers[name] = Of(name, 0);
        }

        try
        {
            File.WriteAllBytes(_path + ".tmp", JsonSerializer.SerializeToUtf8Bytes(new ConsumerUsageFile { Consumers = consumers }, ConsumerJsonContext.Default.ConsumerUsageFile));
            File.Move(_path + ".tmp", _path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Tried again on the next tick; until then a restart would count today's requests afresh.
            Volatile.Write(ref _dirty, 1);
            if (_logger is not null)
            {
                Log.SaveFailed(_logger, _path, ex.Message);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        await _saving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        Save();
        _stopping.Dispose();
    }

    private sealed class Counter
    {
        public long Day;
        public long Today;
        public long Total;
        public long Refused;
        public DateTimeOffset? LastSeen;
    }

    private static partial class Log
    {
        [Microsoft.Extensions.Logging.LoggerMessage(EventId = 1604, Level = Microsoft.Extensions.Logging.LogLevel.Warning,
            Message = "consumers: cannot save the usage counts to {Path} ({Reason}); retrying in 5 s")]
        public static partial void SaveFailed(Microsoft.Extensions.Logging.ILogger logger, string path, string reason);

        [Microsoft.Extensions.Logging.LoggerMessage(EventId = 1605, Level = Microsoft.Extensions.Logging.LogLevel.Warning,
            Message = "consumers: cannot read the usage counts in {Path} ({Reason}); today's counts start from 0")]
        public static partial void LoadFailed(Microsoft.Extensions.Logging.ILogger logger, string path, string reason);
    }
}
