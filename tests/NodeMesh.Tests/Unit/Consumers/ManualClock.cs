namespace NodeMesh.Tests.Unit.Consumers;

/// <summary>A clock the test moves: keys expire and quota days turn when the test says.</summary>
internal sealed class ManualClock(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;

    public void Advance(TimeSpan by) => Now += by;
}
