namespace NodeMesh.Identity;

/// <summary>When to renew a certificate and how long to back off after a failure.</summary>
internal sealed record RenewalSchedule
{
    /// <summary>Renew when this fraction of the lifetime has passed.</summary>
    public double RenewAtFraction { get; init; } = 0.5;

    /// <summary>Renew up to this fraction of the lifetime earlier, at random, so a fleet does not renew in step.</summary>
    public double Jitter { get; init; } = 0.1;

    /// <summary>First wait after a failed request; doubled after each further failure.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How long after <paramref name="now"/> to renew a certificate requested at <paramref name="requestedAt"/> and
    /// valid until <paramref name="notAfter"/>. The lifetime is measured from the request, not from the
    /// certificate's back-dated start. <paramref name="random"/> is uniform in [0, 1).
    /// </summary>
    public TimeSpan RenewAfter(DateTimeOffset requestedAt, DateTimeOffset notAfter, DateTimeOffset now, double random)
    {
        TimeSpan lifetime = notAfter - requestedAt;
        if (lifetime <= TimeSpan.Zero)
        {
            return TimeSpan.Zero;
        }

        double fraction = Math.Clamp(RenewAtFraction - (Jitter * random), 0.05, 0.95);
        TimeSpan wait = requestedAt + (lifetime * fraction) - now;
        return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
    }

    /// <summary>The wait before retry number <paramref name="failures"/> (1 after the first failure): exponential, capped, half of it random.</summary>
    public TimeSpan Backoff(int failures, double random)
    {
        double factor = Math.Pow(2, Math.Clamp(failures - 1, 0, 30));
        TimeSpan ceiling = TimeSpan.FromTicks((long)Math.Min(InitialBackoff.Ticks * factor, MaxBackoff.Ticks));
        return (ceiling / 2) + (ceiling / 2 * random);
    }
}
