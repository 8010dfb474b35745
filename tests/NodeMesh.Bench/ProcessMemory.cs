namespace NodeMesh.Bench;

/// <summary>This process's memory as the kernel and the GC see it.</summary>
internal static class ProcessMemory
{
    /// <summary>
    /// Starts a new peak: writing 5 to clear_refs resets VmHWM to the current RSS, so each measurement reports
    /// its own peak rather than the largest so far. Returns false where the kernel does not allow it.
    /// </summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Peak resident set (VmHWM) in MiB.</summary>
    public static double PeakRssMiB() => StatusKiB("VmHWM:") / 1024.0;

    public static double RssMiB() => StatusKiB("VmRSS:") / 1024.0;

    /// <summary>Managed objects still reachable, after a full collection, in MiB.</summary>
    public static double LiveManagedMiB() => GC.GetTotalMemory(forceFullCollection: true) / (1024.0 * 1024.0);

    private static long StatusKiB(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(field.Length).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}
