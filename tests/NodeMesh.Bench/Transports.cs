using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using Nerdbank.Streams;
using NodeMesh.Tunnel;

namespace NodeMesh.Bench;

/// <summary>One end of a stream under test: a reader for what the other end sent, and a writer towards it.</summary>
internal abstract class BenchFlow
{
    public abstract PipeReader Input { get; }

    public abstract ValueTask WriteAsync(ReadOnlyMemory<byte> data);

    /// <summary>Tells the transport that <paramref name="count"/> bytes read from <see cref="Input"/> were delivered (credit).</summary>
    public abstract ValueTask ConsumedAsync(int count);

    public abstract ValueTask CompleteWritesAsync();

    /// <summary>Both directions have ended: releases the stream.</summary>
    public abstract ValueTask CloseAsync();
}

/// <summary>A multiplexed connection under test: opens stream pairs over one TLS connection.</summary>
internal abstract class BenchTransport : IAsyncDisposable
{
    /// <summary>Per-stream receive window, the same for both transports.</summary>
    public const int Window = TunnelStream.InitialWindow;

    public abstract string Name { get; }

    public abstract string Cipher { get; }

    public abstract Task<(BenchFlow Client, BenchFlow Server)> OpenAsync();

    public abstract ValueTask DisposeAsync();

    public static async Task<BenchTransport> ConnectAsync(string name, LoopbackTls tls) => name switch
    {
        NodeMeshTransport.Id => await NodeMeshTransport.ConnectAsync(tls),
        MultiplexingTransport.Id => await MultiplexingTransport.ConnectAsync(tls),
        _ => throw new ArgumentException($"unknown transport '{name}' (expected {NodeMeshTransport.Id} or {MultiplexingTransport.Id})", nameof(name)),
    };
}

/// <summary>The agent's own framed protocol (<see cref="TunnelConnection"/>), used as the agent's pumps use it.</summary>
internal sealed class NodeMeshTransport : BenchTransport
{
    public const string Id = "nodemesh";

    private static readonly FlowHeader Header = new(IPEndPoint.Parse("10.0.0.2:80"), IPEndPoint.Parse("10.0.0.1:1000"), null);
    private readonly TunnelConnection _client;
    private readonly TunnelConnection _server;

    private NodeMeshTransport(TunnelConnection client, TunnelConnection server, string cipher)
    {
        _client = client;
        _server = server;
        Cipher = cipher;
    }

    public override string Name => Id;

    public override string Cipher { get; }

    public static async Task<BenchTransport> ConnectAsync(LoopbackTls tls)
    {
        (TunnelConnection client, TunnelConnection server, string cipher) = await tls.ConnectTunnelAsync();
        return new NodeMeshTransport(client, server, cipher);
    }

    public override async Task<(BenchFlow Client, BenchFlow Server)> OpenAsync()
    {
        TunnelStream opened = await _client.OpenFlowAsync(Header, default);
        TunnelStream accepted = await _server.AcceptFlowAsync(default) ?? throw new IOException($"tunnel closed: {_server.CloseReason}");
        return (new Flow(opened), new Flow(accepted));
    }

    public override async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
    }

    private sealed class Flow(TunnelStream stream) : BenchFlow
    {
        public override PipeReader Input => stream.Input;

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> data) => stream.WriteAsync(data, default);

        public override ValueTask ConsumedAsync(int count) => stream.ConsumedAsync(count, default);

        public override ValueTask CompleteWritesAsync() => stream.CompleteWritesAsync(default);

        public override async ValueTask CloseAsync()
        {
            await stream.Input.CompleteAsync();
            stream.HandlerDone();
        }
    }
}

/// <summary>
/// Nerdbank.Streams' <see cref="MultiplexingStream"/> (protocol 3, as the agent used it before its own
/// protocol) over an <see cref="SslStream"/> pair, its channel window set to <see cref="BenchTransport.Window"/>.
/// </summary>
internal sealed class MultiplexingTransport : BenchTransport
{
    public const string Id = "nerdbank";

    private static readonly MultiplexingStream.ChannelOptions ChannelOptions = new() { ChannelReceivingWindowSize = Window };
    private readonly MultiplexingStream _client;
    private readonly MultiplexingStream _server;
    private readonly SslStream _clientTls;
    private readonly SslStream _serverTls;

    private MultiplexingTransport(MultiplexingStream client, MultiplexingStream server, SslStream clientTls, SslStream serverTls)
    {
        _client = client;
        _server = server;
        _clientTls = clientTls;
        _serverTls = serverTls;
    }

    public override string Name => Id;

    public override string Cipher => _clientTls.NegotiatedCipherSuite.ToString();

    public static async Task<BenchTransport> ConnectAsync(LoopbackTls tls)
    {
        (SslStream clientTls, SslStream serverTls) = await tls.ConnectStreamsAsync();

        // Protocol 3 has per-channel flow control without window growth (protocol 4 would let a busy channel's
        // window grow 16-fold): the window stays what is set here, as the agent's stays 1 MiB.
        var options = new MultiplexingStream.Options
        {
            ProtocolMajorVersion = 3,
            DefaultChannelReceivingWindowSize = Window,
        };
        MultiplexingStream[] pair = await Task.WhenAll(
            MultiplexingStream.CreateAsync(clientTls, options, default),
            MultiplexingStream.CreateAsync(serverTls, options, default));
        return new MultiplexingTransport(pair[0], pair[1], clientTls, serverTls);
    }

    public override async Task<(BenchFlow Client, BenchFlow Server)> OpenAsync()
    {
        Task<MultiplexingStream.Channel> accepting = _server.AcceptChannelAsync(string.Empty, ChannelOptions, default);
        MultiplexingStream.Channel offered = await _client.OfferChannelAsync(string.Empty, ChannelOptions, default);
        return (new Flow(offered), new Flow(await accepting));
    }

    public override async ValueTask DisposeAsync()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        await _clientTls.DisposeAsync();
        await _serverTls.DisposeAsync();
    }

    private sealed class Flow(MultiplexingStream.Channel channel) : BenchFlow
    {
        public override PipeReader Input => channel.Input;

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> data)
        {
            FlushResult flushed = await channel.Output.WriteAsync(data);
            if (flushed.IsCompleted)
            {
                throw new IOException($"channel {channel.QualifiedId} closed while sending");
            }
        }

        // The channel counts what its reader has advanced past and returns the credit itself.
        public override ValueTask ConsumedAsync(int count) => ValueTask.CompletedTask;

        public override ValueTask CompleteWritesAsync() => channel.Output.CompleteAsync();

        public override async ValueTask CloseAsync()
        {
            await channel.Input.CompleteAsync();
            channel.Dispose();
        }
    }
}
