using System.Collections.Concurrent;
using NodeMesh.Interop;

namespace NodeMesh.Capture;

/// <summary>
/// A dedicated OS thread that creates sockets inside one workload's network namespace. Sockets keep the
/// namespace they were created in, so the agent creates a workload's listeners and delivery sockets here
/// and then uses them from any thread. setns(2) is per thread, which is why this is never a pool thread.
/// The thread enters the namespace only for the duration of each work item and returns to the agent's own
/// namespace before it completes the caller's task: a thread created by this one (the thread pool injects
/// workers from whichever thread queues work) inherits its namespace, and must never inherit a workload's.
/// </summary>
internal sealed class NamespaceThread : IDisposable
{
    private readonly BlockingCollection<Func<Action>> _work = new(boundedCapacity: 4096);
    private readonly Thread _thread;
    private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private NamespaceThread(string netnsPath, SafeFileDescriptor handle, NamespaceId id)
    {
        NetnsPath = netnsPath;
        Handle = handle;
        Id = id;
        _thread = new Thread(Run) { IsBackground = true, Name = "netns " + Path.GetFileName(netnsPath) };
    }

    /// <summary>The path the namespace was registered with (for messages; never opened again).</summary>
    public string NetnsPath { get; }

    /// <summary>
    /// The namespace itself, opened once when the thread starts. Everything done in the namespace afterwards
    /// (sockets, rules) goes through this handle, so it stays the same namespace whatever the path comes to name.
    /// Closed by the thread when it stops.
    /// </summary>
    public SafeFileDescriptor Handle { get; }

    /// <summary>Device and inode of the held namespace.</summary>
    public NamespaceId Id { get; }

    /// <summary>Starts a thread and moves it into the namespace; fails if the namespace cannot be entered.</summary>
    public static Task<NamespaceThread> StartAsync(string netnsPath) => StartAsync(netnsPath, check: null);

    /// <summary>
    /// Opens the namespace, lets <paramref name="check"/> refuse it by its identity (it throws), then starts the
    /// thread in it. The identity checked is the one of the handle kept, not of a second look at the path.
    /// </summary>
    public static Task<NamespaceThread> StartAsync(string netnsPath, Action<NamespaceId>? check) =>
        StartAsync(NetworkNamespace.Open(netnsPath), netnsPath, check);

    /// <summary>
    /// Starts the thread in the namespace held by <paramref name="handle"/> (one handed over by the CNI shim), which
    /// the thread owns from now on, also when starting fails. <paramref name="netnsPath"/> names it in messages.
    /// </summary>
    public static async Task<NamespaceThread> StartAsync(SafeFileDescriptor handle, string netnsPath, Action<NamespaceId>? check)
    {
        NamespaceThread thread;
        try
        {
            NamespaceId id = NetworkNamespace.Identify(handle, netnsPath);
            check?.Invoke(id);
            thread = new NamespaceThread(netnsPath, handle, id);
        }
        catch
        {
            handle.Dispose();
            throw;
        }

        thread._thread.Start();
        try
        {
            await thread._entered.Task;
        }
        catch
        {
            thread.Dispose();
            throw;
        }

        return thread;
    }

    /// <summary>Runs <paramref name="action"/> inside the namespace.</summary>
    public Task<T> InvokeAsync<T>(Func<T> action)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        // The work item runs inside the namespace; the completion it returns runs after the thread is home.
        if (!_work.TryAdd(() =>
            {
                try
                {
                    T result = action();
                    return () => tcs.SetResult(result);
                }
                catch (Exception ex)
                {
                    return () => tcs.SetException(ex);
                }
            }))
        {
            tcs.SetException(new InvalidOperationException($"namespace thread for {NetnsPath} is stopped or overloaded"));
        }

        return tcs.Task;
    }

    private void Run()
    {
        SafeFileDescriptor home;
        SafeFileDescriptor target = Handle;
        try
        {
            home = NetworkNamespace.OpenCurrent();
        }
        catch (Exception ex)
        {
            target.Dispose();
            _entered.SetException(ex);
            return;
        }

        using (home)
        using (target)
        {
            try
            {
                // Prove the namespace can be entered before anyone relies on it.
                NetworkNamespace.Enter(target, NetnsPath);
                NetworkNamespace.Enter(home, "the agent's namespace");
            }
            catch (Exception ex)
            {
                _entered.SetException(ex);
                return;
            }

            _entered.SetResult();
            foreach (Func<Action> item in _work.GetConsumingEnumerable())
            {
                Action complete;
                NetworkNamespace.Enter(target, NetnsPath);
                try
                {
                    complete = item();
                }
                finally
                {
                    NetworkNamespace.Enter(home, "the agent's namespace");
                }

                complete();
            }
        }
    }

    public void Dispose()
    {
        _work.CompleteAdding();
    }
}
