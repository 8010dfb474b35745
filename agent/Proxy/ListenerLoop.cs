using System.Net.Sockets;

namespace NodeMesh.Proxy;

/// <summary>
/// Accepts connections on a workload listener until the workload stops, and runs each one as a
/// <see cref="Flow"/> that owns the accepted socket and is recorded once when its handler returns.
/// </summary>
internal static class ListenerLoop
{
    public static Task RunAsync(
        Socket listener, string direction, string path, ConnectionManager connections, FlowRecorder recorder, Func<Flow, Socket, Task> handle, CancellationToken stopping) =>
        Sockets.AcceptLoop.RunAsync(listener, client => RunFlowAsync(client, direction, path, connections, handle, stopping), recorder.AcceptFailures(listener), stopping);

    private static async Task RunFlowAsync(Socket client, string direction, string path, ConnectionManager connections, Func<Flow, Socket, Task> handle, CancellationToken stopping)
    {
        await using Flow flow = connections.Open(direction, path, stopping);
        flow.Own(client);
        await handle(flow, client);
    }
}
