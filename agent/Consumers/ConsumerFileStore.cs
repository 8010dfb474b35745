using System.Text.Json;

namespace NodeMesh.Consumers;

/// <summary>
/// Consumers in the state directory's <c>consumers.json</c> (mode 0600: it holds key hashes), for one node without
/// a registry store. Written whole to a temporary file, flushed and renamed into place: a crash leaves the old file
/// or the new one, never half of one.
/// </summary>
internal sealed class ConsumerFileStore(string stateDir) : IConsumerStore
{
    public const string FileName = "consumers.json";

    private readonly string _path = Path.Combine(stateDir, FileName);
    private readonly SemaphoreSlim _writing = new(1, 1);
    private volatile ConsumerDirectory _current = ConsumerDirectory.NotLoaded;

    public string Describe => $"state directory {stateDir}";

    public ConsumerDirectory Current => _current;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _current = new ConsumerDirectory(Read());
        return Task.CompletedTask;
    }

    public async Task<ConsumerRecord?> ChangeAsync(string name, Func<ConsumerRecord?, ConsumerRecord?> change, CancellationToken cancellationToken)
    {
        await _writing.WaitAsync(cancellationToken);
        try
        {
            ConsumerDirectory current = _current;
            ConsumerRecord? changed = change(current.Find(name));
            List<ConsumerRecord> all = [.. current.All.Where(c => c.Name != name)];
            if (changed is not null)
            {
                all.Add(changed);
            }

            Write(all);
            _current = new ConsumerDirectory(all);
            return changed;
        }
        finally
        {
            _writing.Release();
        }
    }

    private List<ConsumerRecord> Read()
    {
        if (!File.Exists(_path))
        {
            return [];
        }

        try
        {
            ConsumerFile file = JsonSerializer.Deserialize(File.ReadAllBytes(_path), ConsumerJsonContext.Default.ConsumerFile)
                ?? throw new JsonException("the file holds null");
            var problems = new List<string>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < file.Consumers.Count; i++)
            {
                if (ConsumerRules.RecordError(file.Consumers[i]) is { } error)
                {
                    problems.Add($"consumers[{i}]: {error}");
                }
                else if (!names.Add(file.Consumers[i].Name))
                {
                    problems.Add($"consumers[{i}]: a second consumer named {file.Consumers[i].Name}");
                }
            }

            return problems.Count == 0
                ? [.. file.Consumers]
                : throw new ConsumerStoreException($"{_path} is not a valid consumers file: {string.Join("; ", problems)}");
        }
        catch (Exception ex) when (ex is not ConsumerStoreException and (JsonException or IOException or UnauthorizedAccessException))
        {
            throw new ConsumerStoreException($"cannot read {_path}: {ex.Message}", ex);
        }
    }

    private void Write(List<ConsumerRecord> consumers)
    {
        string temporary = _path + ".tmp";
        try
        {
            using (var stream = new FileStream(temporary, new FileStreamOptions
            {
                Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                JsonSerializer.Serialize(stream, new ConsumerFile { Consumers = [.. consumers.OrderBy(c => c.Name, StringComparer.Ordinal)] }, ConsumerJsonContext.Default.ConsumerFile);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, _path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConsumerStoreException($"cannot write {_path}: {ex.Message}", ex);
        }
    }

    public ValueTask DisposeAsync()
    {
        _writing.Dispose();
        return ValueTask.CompletedTask;
    }
}
