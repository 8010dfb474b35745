using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using Nerdbank.Streams;
using NodeMesh.Identity;
using NodeMesh.Tests.Tunnel;
using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Fuzz;

/// <summary>How the fuzzing peer leaves once its input is sent.</summary>
internal enum PeerExit
{
    /// <summary>The peer's side of the transport ends (the agent reads end of stream).</summary>
    HangUp,

    /// <summary>The agent's side closes the connection itself, possibly mid-frame.</summary>
    LocalClose,
}

/// <summary>
/// Feeds one byte sequence, as a peer's half of a tunnel connection, to a real <see cref="TunnelConnection"/>
/// over an in-memory duplex pipe, with flows served (listener) or opened (dialler) on it as the agent would,
/// and checks what must hold for any input: the connection ends once, with a reason, within a bound; every flow
/// handler and pump ends; every stream-limit count is given back; the agent sends only well-formed frames.
/// Anything else (an exception escaping, a hang, a leaked handler) fails with the input.
/// </summary>
internal static class TunnelFuzzTarget
{
    /// <summary>Generous for 2 busy cores; a correct run takes milliseconds.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    private static readonly SpiffeId Node = SpiffeId.Parse("spiffe://cluster.local/ns/nodemesh-system/sa/node.node2");
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");

    public static async Task RunAsync(byte[] input, bool dialler, PeerExit exit)
    {
        var quota = new IdentityStreamQuota(64);
        var options = new TunnelOptions
        {
            // Small limits, so short inputs reach them: credit overrun, stream limit, per-identity quota.
            MaxAcceptedStreams = 8,
            ConnectionWindow = 64 * 1024,
            KeepaliveInterval = TimeSpan.FromMinutes(1),
            KeepaliveTimeout = TimeSpan.FromMinutes(2),
            Quota = quota,
        };
        (IDuplexPipe near, IDuplexPipe far) = FullDuplexStream.CreatePipePair();
        var connection = dialler
            ? new TunnelConnection(near.AsStream(), null, dialler: true, Web, Node, options)
            : new TunnelConnection(near.AsStream(), null, dialler: false, Node, Web, options);
        var work = new ConcurrentQueue<Task>();
        Task<string?> agentFrames = CheckAgentFramesAsync(far.Input.AsStream());
        Task serving = Task.CompletedTask;
        if (dialler)
        {
            for (int port = 80; port < 82; port++)
            {
                TunnelStream flow = await connection.OpenFlowAsync(RawTunnelPeer.Header(port), default);
                work.Enqueue(ExerciseAsync(flow, reply: true));
            }
        }
        else
        {
            serving = ServeAsync(connection, work);
        }

        await SendAsync(far.Output, input, connection);
        if (exit == PeerExit.HangUp)
        {
            await far.Output.CompleteAsync();
        }
        else
        {
            // Sometimes at once, sometimes after the read loop has had a moment with the input.
            await Task.Delay(input.Length % 3);
            await connection.DisposeAsync();
        }

        string hex = Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 4096)));
        if (!await Within(connection.Completion))
        {
            throw new TimeoutException($"the connection did not end within {Bound} after the peer ({exit}); input {hex}");
        }

        Assert.False(string.IsNullOrEmpty(connection.CloseReason), "a connection that ended has a reason");
        if (!await Within(serving) || !await Within(Task.WhenAll(work)))
        {
            throw new TimeoutException($"a flow handler or pump still runs {Bound} after the connection ended ({connection.CloseReason}); input {hex}");
        }

        Assert.Equal(0, connection.LiveAcceptedStreams);
        Assert.Equal(0, quota.Current(Web));
        if (!await Within(agentFrames))
        {
            throw new TimeoutException("the agent's side of the transport was never closed");
        }

        Assert.Null(await agentFrames);
        await far.Input.CompleteAsync();
    }

    /// <summary>Whether <paramref name="task"/> ends within the bound; what it failed with is rethrown (and reported with the input).</summary>
    private static async Task<bool> Within(Task task)
    {
        if (await Task.WhenAny(task, Task.Delay(Bound)) != task)
        {
            return false;
        }

        await task;
        return true;
    }

    /// <summary>Writes the input in uneven pieces (frames split across reads), stopping if the connection ends.</summary>
    private static async Task SendAsync(PipeWriter output, byte[] input, TunnelConnection connection)
    {
        int offset = 0;
        for (int i = 1; offset < input.Length && !connection.Completion.IsCompleted; i++)
        {
            int piece = Math.Min(input.Length - offset, 1 + (i * 7919 % 5000));
            FlushResult flushed = await output.WriteAsync(input.AsMemory(offset, piece)).AsTask().WaitAsync(Bound);
            if (flushed.IsCompleted)
            {
                return;
            }

            offset += piece;
        }
    }

    /// <summary>The listener's side: each accepted flow is served as the inbound path would, and always ends.</summary>
    private static async Task ServeAsync(TunnelConnection connection, ConcurrentQueue<Task> handlers)
    {
        while (await connection.AcceptFlowAsync(default) is TunnelStream flow)
        {
            handlers.Enqueue(Task.Run(async () =>
            {
                try
                {
                    if (flow.Header is null)
                    {
                        Assert.False(string.IsNullOrEmpty(flow.HeaderError), "a stream without a flow header says why");
                        await flow.ResetAsync(TunnelError.Protocol);
                        return;
                    }

                    await ExerciseAsync(flow, reply: flow.Header.Value.Destination.Port % 2 == 0);
                }
                finally
                {
                    flow.HandlerDone();
                }
            }));
        }
    }

    /// <summary>Reads what the peer sends to the end; answers some bytes and a FIN, or resets. IOException is the stream failing.</summary>
    private static async Task ExerciseAsync(TunnelStream flow, bool reply)
    {
        try
        {
            if (reply)
            {
                await flow.WriteAsync(new byte[100], default);
                await flow.CompleteWritesAsync(default);
            }

            byte[] received = await TunnelStreams.ReadAllAsync(flow);
            if (!reply)
            {
                await flow.ResetAsync(received.Length % 2 == 0 ? TunnelError.Cancelled : TunnelError.Internal);
            }
        }
        catch (IOException)
        {
            // The stream was reset or the connection lost: the expected end for most fuzzed flows.
        }
    }

    /// <summary>Every frame the agent writes must itself be well formed. Returns the first violation, or null.</summary>
    private static async Task<string?> CheckAgentFramesAsync(Stream fromAgent)
    {
        byte[] header = new byte[FrameHeader.Size];
        byte[] payload = new byte[FrameHeader.MaxPayload];
        while (true)
        {
            int got = await fromAgent.ReadAtLeastAsync(header, header.Length, throwOnEndOfStream: false);
            if (got == 0)
            {
                return null;
            }

            if (got < header.Length)
            {
                // The writer is stopped when the connection ends; it may cut its last batch. Only whole frames are checked.
                return null;
            }

            if (!FrameHeader.TryRead(header, out FrameHeader frame, out string? error))
            {
                return $"the agent sent a malformed frame ({error}): {Convert.ToHexString(header)}";
            }

            if (await fromAgent.ReadAtLeastAsync(payload.AsMemory(0, frame.Length), frame.Length, throwOnEndOfStream: false) < frame.Length)
            {
                return null;
            }

            if (frame.Type == FrameType.GoAway && BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4)) > (uint)TunnelError.Internal)
            {
                return $"the agent sent GOAWAY with an undefined code {BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4))}";
            }
        }
    }
}
