using NodeMesh.Tunnel;

namespace NodeMesh.Tests.Tunnel;

/// <summary>Sends and receives whole payloads over tunnel streams, as a flow's pumps would.</summary>
internal static class TunnelStreams
{
    public static async Task SendAllAsync(TunnelStream stream, byte[] payload, int chunk = 50_000)
    {
        for (int offset = 0; offset < payload.Length; offset += chunk)
        {
            await stream.WriteAsync(payload.AsMemory(offset, Math.Min(chunk, payload.Length - offset)), default);
        }

        await stream.CompleteWritesAsync(default);
    }

    public static async Task<byte[]> ReadAllAsync(TunnelStream stream)
    {
        using var collected = new MemoryStream();
        while (true)
        {
            System.IO.Pipelines.ReadResult result = await stream.Input.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                collected.Write(segment.Span);
            }

            int consumed = (int)result.Buffer.Length;
            stream.Input.AdvanceTo(result.Buffer.End);
            await stream.ConsumedAsync(consumed, default);
            if (result.IsCompleted)
            {
                return collected.ToArray();
            }
        }
    }
}
