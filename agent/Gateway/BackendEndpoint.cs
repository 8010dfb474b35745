namespace NodeMesh.Gateway;

/// <summary>
/// One endpoint of a backend (a workload of a mesh service, or a plain backend's address), with what the gateway
/// knows of it: requests in flight, its active health, and its passive health (failures in a row, ejections).
/// </summary>
internal sealed class BackendEndpoint(string name, string key, string prefix, HttpMessageInvoker invoker)
{
    private int _inFlight;
    private int _consecutiveFailures;
    private long _ejectedUntil;

    /// <summary>The workload's name (or the address), as logs and the access log show it.</summary>
    public string Name { get; } = name;

    /// <summary>What identifies it across registry changes (a workload of the same name at another address is another endpoint).</summary>
    public string Key { get; } = key;

    /// <summary>The destination prefix requests to it are built on.</summary>
    public string Prefix { get; } = prefix;

    /// <summary>Its own HTTP client, so its connections are its own (a pooled connection never carries a request chosen for another endpoint).</summary>
    public HttpMessageInvoker Invoker { get; } = invoker;

    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>As the active health check last judged it (healthy until a check says otherwise).</summary>
    public bool Healthy { get; set; } = true;

    /// <summary>Checks in a row with the same verdict, for the thresholds.</summary>
    public int CheckStreak { get; set; }

    /// <summary>Ejections in a row (each lasts longer), reset once it answers well again.</summary>
    public int Ejections { get; set; }

    public bool IsEjected(long now) => now < Volatile.Read(ref _ejectedUntil);

    public void Started() => Interlocked.Increment(ref _inFlight);

    public void Finished() => Interlocked.Decrement(ref _inFlight);

    /// <summary>A failed answer (5xx, no connection): the count of failures in a row after it.</summary>
    public int Failed() => Interlocked.Increment(ref _consecutiveFailures);

    public void Succeeded()
    {
        Volatile.Write(ref _consecutiveFailures, 0);
    }

    public void Eject(long until)
    {
        Volatile.Write(ref _ejectedUntil, until);
        Volatile.Write(ref _consecutiveFailures, 0);
    }
}
