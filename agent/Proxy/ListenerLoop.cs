using System.Net.Sockets;

namespace NodeMesh.Proxy;

/// <summary>
/// Accepts connections on a workload listener until the workload stops, and runs each one as a tracked
/// flow (counted while it lives, so shutdown can drain it).
/// </summary>
internal static class ListenerLoop
{
    public static Task RunAsync(Socket listener, FlowRecorder recorder, Func<Socket, Task> handle, CancellationToken stopping) =>
        Sockets.AcceptLoop.RunAsync(listener, client => TrackAsync(client, recorder, handle), recorder.AcceptFailures(listener), stopping);

    private static async Task TrackAsync(Socket client, FlowRecorder recorder, Func<Socket, Task> handle)
    {
        recorder.Begin();
        try
        {
            await handle(client);
        }
        finally
        {
            recorder.End();
        }
    }
}
