using System.Security.Cryptography;
using NodeMesh.Capture;
using NodeMesh.Interop;

namespace NodeMesh.State;

/// <summary>
/// The agent's state directory, locked for the agent's lifetime (<c>flock</c> on <c>agent.lock</c>): one agent per
/// state directory, so two agents never restore, capture and rewrite the same workloads. The lock goes with the
/// process, however it ends. The directory also keeps the agent's instance id, which marks its capture rules.
/// </summary>
internal sealed class StateDirectory : IDisposable
{
    private const string LockFile = "agent.lock";
    private const string InstanceFile = "instance-id";

    private readonly SafeFileDescriptor _lock;

    private StateDirectory(string path, SafeFileDescriptor held, string instanceId, string node)
    {
        Path = path;
        _lock = held;
        Owner = new RuleOwner(node, instanceId, Environment.ProcessId);
    }

    public string Path { get; }

    /// <summary>This agent, as its capture rules name it.</summary>
    public RuleOwner Owner { get; }

    /// <summary>Creates the directory if needed and takes its lock; throws <see cref="StateDirectoryLockedException"/> if another agent holds it.</summary>
    public static StateDirectory Lock(string path, string node)
    {
        Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string lockPath = System.IO.Path.Combine(path, LockFile);
        SafeFileDescriptor held = FileLock.TryAcquire(lockPath) ?? throw new StateDirectoryLockedException(
            $"another agent (pid {HolderPid(lockPath)}) is running with state directory {path} (it holds {lockPath}); " +
            "only one agent may run per state directory: stop it first, or give this agent its own stateDir and ports");
        try
        {
            return new StateDirectory(path, held, InstanceId(path), node);
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }

    private static string HolderPid(string lockPath)
    {
        string? text = FileLock.ReadHolder(lockPath)?.Trim();
        return text is { Length: > 0 and <= 10 } && text.All(char.IsAsciiDigit) ? text : "unknown";
    }

    /// <summary>16 hex digits, made once per state directory (only the lock holder gets here, so no race).</summary>
    private static string InstanceId(string dir)
    {
        string file = System.IO.Path.Combine(dir, InstanceFile);
        if (File.Exists(file))
        {
            string saved = File.ReadAllText(file).Trim();
            if (saved.Length == 16 && saved.All(char.IsAsciiHexDigitLower))
            {
                return saved;
            }
        }

        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        File.WriteAllText(file + ".tmp", id + "\n");
        File.Move(file + ".tmp", file, overwrite: true);
        return id;
    }

    public void Dispose() => _lock.Dispose();
}

/// <summary>Another agent holds the state directory's lock.</summary>
internal sealed class StateDirectoryLockedException(string message) : IOException(message);
