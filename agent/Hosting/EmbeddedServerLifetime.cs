using Microsoft.Extensions.Hosting;

namespace NodeMesh.Hosting;

/// <summary>
/// The lifetime of a Kestrel instance inside the agent (admin, gateway): started and stopped by the agent's host,
/// so no console lifetime of its own (signals, start-up banners).
/// </summary>
internal sealed class EmbeddedServerLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
