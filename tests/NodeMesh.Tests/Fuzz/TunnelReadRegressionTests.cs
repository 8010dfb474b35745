using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using Nerdbank.Streams;
using NodeMesh.Identity;
using NodeMesh.Tests.Tunnel;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Fuzz;

/// <summary>Cases the tunnel fuzz properties found, kept as plain tests.</summary>
public sealed class TunnelReadRegressionTests
{
    private static readonly SpiffeId Node = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/node.node2");
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");

    /// <remarks>
    /// Found while fuzzing the read loop (cut inputs, <see cref="TunnelFuzzTarget"/>): when the transport ends inside a DATA payload,
    /// ReceiveDataAsync's finally still commits the whole announced length to the flow's pipe (TunnelStream.CommitReceiveAsync),
    /// so a pump that reads before the abort fails the stream gets the frame's missing bytes: whatever the pooled
    /// buffer held (possibly another flow's data). In production the window is the abort's log and metric calls;
    /// here a logger that is slow to log the abort holds it open until the pump has read, so the case is deterministic.
    /// </remarks>
    [Fact]
    public async Task DataFrameCutShortByTheTransportEnding_DeliversNoBytesThePeerNeverSent()
    {
        (Stream near, Stream far) = FullDuplexStream.CreatePair();
        var pumpRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new TunnelOptions { Logger = new SlowAbortLogger(pumpRead.Task) };
        await using var listener = new TunnelConnection(near, null, dialler: false, Node, Web, options);
        await using var peer = new RawTunnelPeer(far);
        await peer.OpenAsync(1);
        TunnelStream flow = (await listener.AcceptFlowAsync(default))!;

        // The flow's pump waits for bytes, as the inbound path's does.
        Task<long> delivered = Task.Run(async () =>
        {
            long count = 0;
            try
            {
                while (true)
                {
                    System.IO.Pipelines.ReadResult read = await flow.Input.ReadAsync();
                    pumpRead.TrySetResult();
                    count += read.Buffer.Length;
                    flow.Input.AdvanceTo(read.Buffer.End);
                    if (read.IsCompleted)
                    {
                        return count;
                    }
                }
            }
            catch (IOException)
            {
                // The stream fails with the connection: expected. What matters is what came before.
                pumpRead.TrySetResult();
                return count;
            }
        });

        // A DATA header announcing 100 bytes, then 10 of them, then the peer's transport ends.
        byte[] frame = new byte[FrameHeader.Size + 10];
        frame[0] = (byte)FrameType.Data;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), 1);
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(8), 100);
        "0123456789"u8.CopyTo(frame.AsSpan(FrameHeader.Size));
        await far.WriteAsync(frame);
        await far.DisposeAsync();
        await listener.Completion.WaitAsync(TimeSpan.FromSeconds(20));

        // The connection failed mid-frame: none of the frame (least of all the 90 bytes never sent) reaches the flow.
        Assert.Equal(0, await delivered.WaitAsync(TimeSpan.FromSeconds(20)));
    }

    /// <summary>
    /// Takes its time over the connection's abort warning, as a busy log sink might: until the flow's pump has
    /// read (what it should not get), or 2 s. Task.Wait lets the thread pool lend the pump a thread meanwhile.
    /// </summary>
    private sealed class SlowAbortLogger(Task pumpRead) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel == LogLevel.Warning)
            {
                pumpRead.Wait(TimeSpan.FromSeconds(2));
            }
        }
    }
}
