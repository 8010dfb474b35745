using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.DependencyInjection;
using NodeMesh.Identity;

namespace NodeMesh.Discovery;

/// <summary>
/// The registry's operations on etcd (v3 gRPC, through dotnet-etcd's generated clients): list a prefix at one
/// revision, watch it from a revision, put under a lease, keep the lease alive. One channel over every member,
/// balanced round robin, so a member that dies costs a reconnect to another, not the registry. etcd's own
/// authentication (user and password: a token, renewed when etcd says it expired) and TLS (its CA as the only
/// trust, no downloads; a client certificate when configured).
/// </summary>
internal sealed class EtcdStore : IAsyncDisposable
{
    private const int ListPage = 1000;

    private readonly EtcdOptions _options;
    private readonly GrpcChannel _channel;
    private readonly KV.KVClient _kv;
    private readonly Watch.WatchClient _watch;
    private readonly Lease.LeaseClient _lease;
    private readonly Auth.AuthClient _auth;
    private readonly SemaphoreSlim _authenticating = new(1, 1);
    private volatile Metadata? _token;

    public EtcdStore(EtcdOptions options)
    {
        if (options.Endpoints.Count == 0)
        {
            throw new ArgumentException("discovery.etcd.endpoints: at least one etcd client URL is needed", nameof(options));
        }

        bool tls = options.Endpoints[0].Scheme == Uri.UriSchemeHttps;
        if (options.Endpoints.Any(e => e.Scheme != options.Endpoints[0].Scheme))
        {
            throw new ArgumentException("discovery.etcd.endpoints: all must be http:// or all https://", nameof(options));
        }

        _options = options;
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = options.DialTimeout,
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(10),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
        };
        if (tls)
        {
            handler.SslOptions = TlsOptions(options);
        }

        var services = new ServiceCollection();
        services.AddSingleton<ResolverFactory>(new StaticResolverFactory(_ => options.Endpoints.Select(e => new BalancerAddress(e.Host, e.Port)).ToArray()));
        _channel = GrpcChannel.ForAddress("static:///etcd", new GrpcChannelOptions
        {
            HttpHandler = handler,
            Credentials = tls ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure,
            ServiceProvider = services.BuildServiceProvider(),
            ServiceConfig = new ServiceConfig { LoadBalancingConfigs = { new RoundRobinConfig() } },
            MaxReceiveMessageSize = 64 * 1024 * 1024,

            // gRPC's own reconnect backoff grows to 120 s by default: after an outage of a few seconds an agent could
            // wait that long to try etcd again, its calls failing meanwhile. Bounded like the registry's own retries.
            InitialReconnectBackoff = TimeSpan.FromMilliseconds(200),
            MaxReconnectBackoff = TimeSpan.FromSeconds(5),
        });
        _kv = new KV.KVClient(_channel);
        _watch = new Watch.WatchClient(_channel);
        _lease = new Lease.LeaseClient(_channel);
        _auth = new Auth.AuthClient(_channel);
    }

    /// <summary>Everything under <paramref name="prefix"/>, read page by page at the revision of the first page.</summary>
    public async Task<StoreListing> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        var entries = new List<KeyValuePair<string, ReadOnlyMemory<byte>>>();
        ByteString end = RangeEnd(prefix);
        ByteString from = ByteString.CopyFromUtf8(prefix);
        long revision = 0;
        while (true)
        {
            var request = new RangeRequest { Key = from, RangeEnd = end, Limit = ListPage, Revision = revision };
            RangeResponse page = await CallAsync((headers, deadline) => _kv.RangeAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
            revision = revision == 0 ? page.Header.Revision : revision;
            foreach (Mvccpb.KeyValue kv in page.Kvs)
            {
                entries.Add(new(kv.Key.ToStringUtf8(), kv.Value.Memory));
            }

            if (!page.More || page.Kvs.Count == 0)
            {
                return new StoreListing(entries, revision);
            }

            // The next page starts just after the last key of this one.
            from = ByteString.CopyFrom([.. page.Kvs[^1].Key.Span, 0]);
        }
    }

    /// <summary>
    /// The changes under <paramref name="prefix"/> from <paramref name="fromRevision"/> on, as etcd sends them, until
    /// cancelled or the stream breaks (an exception: the caller resumes from the last revision it saw). Throws
    /// <see cref="StoreCompactedException"/> when those revisions are gone. Progress notifications (no events) still
    /// move the revision on, so a quiet registry shows it is current.
    /// </summary>
    public async IAsyncEnumerable<StoreChanges> WatchAsync(string prefix, long fromRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Metadata headers = await HeadersAsync(cancellationToken);
        using AsyncDuplexStreamingCall<WatchRequest, WatchResponse> call = _watch.Watch(headers, cancellationToken: cancellationToken);
        await call.RequestStream.WriteAsync(new WatchRequest
        {
            CreateRequest = new WatchCreateRequest
            {
                Key = ByteString.CopyFromUtf8(prefix), RangeEnd = RangeEnd(prefix), StartRevision = fromRevision, ProgressNotify = true,
            },
        }, cancellationToken);
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            WatchResponse response = call.ResponseStream.Current;
            if (response.CompactRevision > 0)
            {
                throw new StoreCompactedException(response.CompactRevision);
            }

            if (response.Canceled)
            {
                throw new RpcException(new Status(StatusCode.Aborted, $"etcd cancelled the watch: {response.CancelReason}"));
            }

            if (response.Created && response.Events.Count == 0)
            {
                continue;
            }

            var events = new List<StoreEvent>(response.Events.Count);
            foreach (Mvccpb.Event change in response.Events)
            {
                events.Add(new StoreEvent(change.Type == Mvccpb.Event.Types.EventType.Delete ? StoreEventKind.Delete : StoreEventKind.Put,
                    change.Kv.Key.ToStringUtf8(), change.Kv.Value.Memory, change.Kv.ModRevision));
            }

            yield return new StoreChanges(events, response.Header.Revision);
        }

        throw new RpcException(new Status(StatusCode.Unavailable, "etcd ended the watch stream"));
    }

    /// <summary>A new lease of <paramref name="ttl"/> (whole seconds, at least 2): entries put under it go when it expires.</summary>
    public async Task<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken)
    {
        var request = new LeaseGrantRequest { TTL = Math.Max(2, (long)Math.Ceiling(ttl.TotalSeconds)) };
        LeaseGrantResponse granted = await CallAsync((headers, deadline) => _lease.LeaseGrantAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
        return string.IsNullOrEmpty(granted.Error) ? granted.ID : throw new RpcException(new Status(StatusCode.Internal, $"etcd refused a lease: {granted.Error}"));
    }

    /// <summary>
    /// Keeps <paramref name="lease"/> alive, one renewal every <paramref name="interval"/>, until cancelled. Returns
    /// when etcd says the lease is gone (TTL 0: expired or revoked; the caller grants a new one and publishes again);
    /// throws when the stream breaks.
    /// </summary>
    public async Task KeepAliveAsync(long lease, TimeSpan interval, CancellationToken cancellationToken)
    {
        Metadata headers = await HeadersAsync(cancellationToken);
        using AsyncDuplexStreamingCall<LeaseKeepAliveRequest, LeaseKeepAliveResponse> call = _lease.LeaseKeepAlive(headers, cancellationToken: cancellationToken);
        while (true)
        {
            await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = lease }, cancellationToken);
            if (!await call.ResponseStream.MoveNext(cancellationToken))
            {
                throw new RpcException(new Status(StatusCode.Unavailable, "etcd ended the lease keep-alive stream"));
            }

            if (call.ResponseStream.Current.TTL <= 0)
            {
                return;
            }

            await Task.Delay(interval, cancellationToken);
        }
    }

    /// <summary>Ends <paramref name="lease"/> now: every entry under it is deleted at once (an orderly stop).</summary>
    public Task RevokeLeaseAsync(long lease, CancellationToken cancellationToken)
    {
        var request = new LeaseRevokeRequest { ID = lease };
        return CallAsync((headers, deadline) => _lease.LeaseRevokeAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
    }

    public Task PutAsync(string key, ReadOnlyMemory<byte> value, long lease, CancellationToken cancellationToken)
    {
        var request = new PutRequest { Key = ByteString.CopyFromUtf8(key), Value = ByteString.CopyFrom(value.Span), Lease = lease };
        return CallAsync((headers, deadline) => _kv.PutAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
    }

    /// <summary>One key's value and the revision that last changed it; (null, 0) when it does not exist.</summary>
    public async Task<(ReadOnlyMemory<byte>? Value, long ModRevision)> GetAsync(string key, CancellationToken cancellationToken)
    {
        var request = new RangeRequest { Key = ByteString.CopyFromUtf8(key) };
        RangeResponse response = await CallAsync((headers, deadline) => _kv.RangeAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
        return response.Kvs.Count == 0 ? (null, 0) : (response.Kvs[0].Value.Memory, response.Kvs[0].ModRevision);
    }

    /// <summary>
    /// Puts <paramref name="value"/> (or deletes the key when null) only if the key was last changed at
    /// <paramref name="modRevision"/> (0: only if it does not exist), in one transaction. Returns the store revision of the change, or 0 when
    /// another writer came first (the caller reads again and decides again).
    /// </summary>
    public async Task<long> CompareAndSwapAsync(string key, long modRevision, ReadOnlyMemory<byte>? value, CancellationToken cancellationToken)
    {
        ByteString name = ByteString.CopyFromUtf8(key);
        var request = new TxnRequest();
        request.Compare.Add(new Compare { Key = name, Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = modRevision });
        request.Success.Add(value is { } put
            ? new RequestOp { RequestPut = new PutRequest { Key = name, Value = ByteString.CopyFrom(put.Span) } }
            : new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = name } });
        TxnResponse response = await CallAsync((headers, deadline) => _kv.TxnAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
        return response.Succeeded ? response.Header.Revision : 0;
    }

    public Task DeleteAsync(string key, CancellationToken cancellationToken)
    {
        var request = new DeleteRangeRequest { Key = ByteString.CopyFromUtf8(key) };
        return CallAsync((headers, deadline) => _kv.DeleteRangeAsync(request, headers, deadline, cancellationToken).ResponseAsync, cancellationToken);
    }

    /// <summary>The key just after every key that starts with <paramref name="prefix"/> (etcd's range end for a prefix).</summary>
    internal static ByteString RangeEnd(string prefix)
    {
        byte[] end = System.Text.Encoding.UTF8.GetBytes(prefix);
        for (int i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xff)
            {
                end[i]++;
                return ByteString.CopyFrom(end.AsSpan(0, i + 1));
            }
        }

        return ByteString.CopyFrom(0);
    }

    /// <summary>One unary call with the deadline and the token; an expired token is renewed and the call made once more.</summary>
    private async Task<T> CallAsync<T>(Func<Metadata, DateTime, Task<T>> call, CancellationToken cancellationToken)
    {
        Metadata headers = await HeadersAsync(cancellationToken);
        try
        {
            return await call(headers, DateTime.UtcNow + _options.RequestTimeout);
        }
        catch (RpcException ex) when (_options.Username.Length > 0 && IsExpiredToken(ex))
        {
            _token = null;
            return await call(await HeadersAsync(cancellationToken), DateTime.UtcNow + _options.RequestTimeout);
        }
    }

    private static bool IsExpiredToken(RpcException ex) =>
        ex.StatusCode is StatusCode.Unauthenticated || ex.Status.Detail.Contains("invalid auth token", StringComparison.Ordinal);

    private async Task<Metadata> HeadersAsync(CancellationToken cancellationToken)
    {
        if (_options.Username.Length == 0)
        {
            return [];
        }

        if (_token is { } token)
        {
            return token;
        }

        await _authenticating.WaitAsync(cancellationToken);
        try
        {
            if (_token is null)
            {
                AuthenticateResponse response = await _auth.AuthenticateAsync(new AuthenticateRequest { Name = _options.Username, Password = _options.Password },
                    deadline: DateTime.UtcNow + _options.RequestTimeout, cancellationToken: cancellationToken);
                _token = new Metadata { { "token", response.Token } };
            }

            return _token;
        }
        finally
        {
            _authenticating.Release();
        }
    }

    private static SslClientAuthenticationOptions TlsOptions(EtcdOptions options)
    {
        X509Certificate2Collection roots = [];
        if (options.CaFile.Length > 0)
        {
            roots.ImportFromPemFile(options.CaFile);
        }

        var ssl = new SslClientAuthenticationOptions
        {
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            ClientCertificates = options.CertFile.Length > 0 ? [X509Certificate2.CreateFromPemFile(options.CertFile, options.KeyFile.Length > 0 ? options.KeyFile : null)] : null,
        };
        if (roots.Count > 0)
        {
            // The members' CA is the only trust (no system roots, no downloads), as for the mesh's own chains.
            ssl.CertificateChainPolicy = MeshChainPolicy.Create(roots);
        }

        return ssl;
    }

    public ValueTask DisposeAsync()
    {
        _channel.Dispose();
        _authenticating.Dispose();
        return ValueTask.CompletedTask;
    }
}
