using System.Text.Json;
using NodeMesh.Contracts;

namespace NodeMesh.State;

/// <summary>
/// Workloads registered at run time, kept in <c>stateDir/workloads.json</c> so a restarted agent captures
/// them again. Written to a temporary file and renamed, so a crash never leaves a half-written file.
/// </summary>
internal sealed class WorkloadStateStore(string stateDir) : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);

    private string FilePath => Path.Combine(stateDir, "workloads.json");

    public async Task<List<WorkloadInfo>> LoadAsync()
    {
        if (!File.Exists(FilePath))
        {
            return [];
        }

        await using FileStream stream = File.OpenRead(FilePath);
        try
        {
            return await JsonSerializer.DeserializeAsync(stream, ApiJsonContext.Default.ListWorkloadInfo) ?? [];
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"state file {FilePath} is corrupt: {ex.Message}", ex);
        }
    }

    public async Task SaveAsync(IEnumerable<WorkloadInfo> workloads)
    {
        await _gate.WaitAsync();
        try
        {
            Directory.CreateDirectory(stateDir);
            string temp = FilePath + ".tmp";
            await using (FileStream stream = File.Create(temp))
            {
                await JsonSerializer.SerializeAsync(stream, workloads.ToList(), ApiJsonContext.Default.ListWorkloadInfo);
                await stream.FlushAsync();
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, FilePath, overwrite: true);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();
}
