using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace NodeMesh.Tests.Kubernetes;

/// <summary>How the server answers a watch from a resourceVersion older than its history.</summary>
public enum GoneStyle
{
    /// <summary>HTTP 200 and one ERROR event whose object is a Status of code 410 (what current API servers do).</summary>
    ErrorEvent,

    /// <summary>HTTP 410 with a Status body.</summary>
    HttpStatus,
}

/// <summary>
/// An API server for the tests, on Kestrel, speaking the real list and watch protocol with the official models'
/// JSON: one resourceVersion counter for every object (etcd's revision behind a real one), lists at a version in
/// pages (<c>limit</c>/<c>continue</c>), watches as chunked streams of one event a line flushed per event,
/// BOOKMARK events, a bounded event history (a watch from before it gets 410 Gone, as an ERROR event or as the
/// HTTP status), bearer-token checks (401), per-resource refusals (403), and faults on demand: drop every watch
/// mid-stream, send a malformed line, stop and start again on the same address.
/// </summary>
internal sealed class FakeApiServer : IAsyncDisposable
{
    private static readonly Dictionary<string, (string Kind, string ApiVersion, string Path)> Resources = new(StringComparer.Ordinal)
    {
        ["pods"] = ("Pod", "v1", "/api/v1/pods"),
        ["services"] = ("Service", "v1", "/api/v1/services"),
        ["endpointslices"] = ("EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices"),
        ["nodes"] = ("Node", "v1", "/api/v1/nodes"),
    };

    private readonly Lock _gate = new();
    private readonly Dictionary<string, SortedDictionary<string, string>> _objects = Resources.Keys.ToDictionary(r => r, _ => new SortedDictionary<string, string>(StringComparer.Ordinal));
    private readonly List<(long Version, string Resource, string Line)> _history = [];
    private readonly List<Watcher> _watchers = [];
    private readonly Dictionary<string, (string Resource, string Version, List<string> Items, int Offset)> _pages = [];
    private readonly List<string> _requests = [];
    private readonly Func<IPEndPoint, Task<Socket>> _bind;
    private readonly X509Certificate2? _certificate;
    private IPEndPoint _endPoint;
    private WebApplication? _app;
    private long _version = 100;
    private long _compactedThrough;

    private FakeApiServer(IPEndPoint endPoint, Func<IPEndPoint, Task<Socket>> bind, X509Certificate2? certificate)
    {
        _endPoint = endPoint;
        _bind = bind;
        _certificate = certificate;
    }

    /// <summary>The token a request must carry as "Authorization: Bearer TOKEN"; null: none needed.</summary>
    public string? Token { get; set; } = "test-token";

    public GoneStyle Gone { get; set; } = GoneStyle.ErrorEvent;

    /// <summary>Resources every request for which is refused with 403.</summary>
    public HashSet<string> Forbidden { get; } = new(StringComparer.Ordinal);

    /// <summary>The next continue token presented is answered 410 Expired (a compaction between two pages).</summary>
    public bool ExpireNextContinue { get; set; }

    /// <summary>Events kept for watches from an older resourceVersion; older ones are compacted away.</summary>
    public int HistoryLimit { get; set; } = 1000;

    public Uri Url => new($"{(_certificate is null ? "http" : "https")}://{_endPoint}/");

    public long Version
    {
        get
        {
            lock (_gate)
            {
                return _version;
            }
        }
    }

    /// <summary>Every request as "list pods", "list pods continue", "watch pods from 105", in order.</summary>
    public IReadOnlyList<string> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    public int OpenWatches
    {
        get
        {
            lock (_gate)
            {
                return _watchers.Count;
            }
        }
    }

    /// <summary>On loopback (a free port), or wherever <paramref name="bind"/> makes the listening socket (another namespace).</summary>
    public static async Task<FakeApiServer> StartAsync(IPEndPoint? endPoint = null, Func<IPEndPoint, Task<Socket>>? bind = null, X509Certificate2? certificate = null)
    {
        var server = new FakeApiServer(endPoint ?? new IPEndPoint(IPAddress.Loopback, 0), bind ?? (ep => Task.FromResult(Bind(ep))), certificate);
        await server.StartAsync();
        return server;
    }

    /// <summary>A TCP socket bound to <paramref name="endPoint"/> (not listening yet: Kestrel does that).</summary>
    public static Socket Bind(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(endPoint);
        return socket;
    }

    /// <summary>Serves (again, after <see cref="StopAsync"/>) on the same address and port.</summary>
    public async Task StartAsync()
    {
        Socket socket = await _bind(_endPoint);
        _endPoint = (IPEndPoint)socket.LocalEndPoint!;
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseSockets(o => o.CreateBoundListenSocket = _ => socket);
        builder.WebHost.ConfigureKestrel(o => o.Listen(_endPoint, listen =>
        {
            if (_certificate is not null)
            {
                listen.UseHttps(_certificate);
            }
        }));
        WebApplication app = builder.Build();
        app.Run(ServeAsync);
        await app.StartAsync();
        _app = app;
    }

    /// <summary>Stops serving: open watches are cut, new connections refused, the objects kept.</summary>
    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            DropWatches();
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await app.StopAsync(deadline.Token);
            await app.DisposeAsync();
        }
    }

    /// <summary>Creates or replaces <paramref name="item"/> (ADDED or MODIFIED); returns its new resourceVersion.</summary>
    public long Apply<T>(T item)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        string resource = ResourceOf(item);
        (string kind, string apiVersion, _) = Resources[resource];
        item.Kind = kind;
        item.ApiVersion = apiVersion;
        item.Metadata ??= new V1ObjectMeta();
        if (resource != "nodes")
        {
            item.Metadata.NamespaceProperty ??= "default";
        }

        item.Metadata.Uid ??= Guid.NewGuid().ToString();
        lock (_gate)
        {
            long version = ++_version;
            item.Metadata.ResourceVersion = version.ToString(System.Globalization.CultureInfo.InvariantCulture);
            string json = KubernetesJson.Serialize(item);
            string key = Key(item.Metadata);
            bool existed = _objects[resource].ContainsKey(key);
            _objects[resource][key] = json;
            Record(version, resource, Event(existed ? "MODIFIED" : "ADDED", json));
            return version;
        }
    }

    /// <summary>Deletes the object (DELETED, with its last state at the new resourceVersion).</summary>
    public long Delete<T>(string? @namespace, string name)
        where T : class, IKubernetesObject<V1ObjectMeta>, new()
    {
        string resource = ResourceOf(new T());
        lock (_gate)
        {
            string key = @namespace is null ? name : $"{@namespace}/{name}";
            if (!_objects[resource].Remove(key, out string? json))
            {
                throw new InvalidOperationException($"no {resource} {key}");
            }

            long version = ++_version;
            T last = KubernetesJson.Deserialize<T>(json);
            last.Metadata.ResourceVersion = version.ToString(System.Globalization.CultureInfo.InvariantCulture);
            Record(version, resource, Event("DELETED", KubernetesJson.Serialize(last)));
            return version;
        }
    }

    /// <summary>Forgets every event so far (etcd compaction): a watch from an older resourceVersion, or a continue token, is gone.</summary>
    public void Compact()
    {
        lock (_gate)
        {
            _history.Clear();
            _compactedThrough = _version;
            _pages.Clear();
        }
    }

    /// <summary>A BOOKMARK at the current resourceVersion to every watch that allows them.</summary>
    public void Bookmark()
    {
        lock (_gate)
        {
            foreach (Watcher watcher in _watchers.Where(w => w.Bookmarks))
            {
                (string kind, string apiVersion, _) = Resources[watcher.Resource];
                string version = _version.ToString(System.Globalization.CultureInfo.InvariantCulture);
                watcher.Lines.Writer.TryWrite($"{{\"type\":\"BOOKMARK\",\"object\":{{\"kind\":\"{kind}\",\"apiVersion\":\"{apiVersion}\",\"metadata\":{{\"resourceVersion\":\"{version}\"}}}}}}");
            }
        }
    }

    /// <summary>Cuts every open watch connection mid-stream (a reset, not an orderly end).</summary>
    public void DropWatches()
    {
        lock (_gate)
        {
            foreach (Watcher watcher in _watchers)
            {
                watcher.Context.Abort();
            }

            _watchers.Clear();
        }
    }

    /// <summary>Writes <paramref name="line"/> as it is to every watch of <paramref name="resource"/>.</summary>
    public void SendRaw(string resource, string line)
    {
        lock (_gate)
        {
            foreach (Watcher watcher in _watchers.Where(w => w.Resource == resource))
            {
                watcher.Lines.Writer.TryWrite(line);
            }
        }
    }

    private static string ResourceOf(object item) => item switch
    {
        V1Pod => "pods",
        V1Service => "services",
        V1EndpointSlice => "endpointslices",
        V1Node => "nodes",
        _ => throw new ArgumentException($"{item.GetType().Name} is not served"),
    };

    private static string Key(V1ObjectMeta meta) => meta.NamespaceProperty is null ? meta.Name : $"{meta.NamespaceProperty}/{meta.Name}";

    private static string Event(string type, string json) => $"{{\"type\":\"{type}\",\"object\":{json}}}";

    private void Record(long version, string resource, string line)
    {
        _history.Add((version, resource, line));
        if (_history.Count > HistoryLimit)
        {
            _compactedThrough = _history[0].Version;
            _history.RemoveAt(0);
        }

        foreach (Watcher watcher in _watchers.Where(w => w.Resource == resource))
        {
            watcher.Lines.Writer.TryWrite(line);
        }
    }

    private async Task ServeAsync(HttpContext context)
    {
        string? resource = Resources.FirstOrDefault(r => r.Value.Path == context.Request.Path.Value).Key;
        if (resource is null || context.Request.Method != "GET")
        {
            await StatusAsync(context, 404, "NotFound", $"the server could not find the requested resource {context.Request.Path}");
            return;
        }

        if (Token is not null && context.Request.Headers.Authorization.ToString() != $"Bearer {Token}")
        {
            await StatusAsync(context, 401, "Unauthorized", "Unauthorized");
            return;
        }

        IQueryCollection query = context.Request.Query;
        bool watch = query["watch"] is { Count: > 0 } w && w[0] is "1" or "true";
        if (Forbidden.Contains(resource))
        {
            string group = resource == "endpointslices" ? "discovery.k8s.io" : "";
            await StatusAsync(context, 403, "Forbidden",
                $"{resource} is forbidden: User \"system:serviceaccount:nodemesh:nodemesh\" cannot {(watch ? "watch" : "list")} resource \"{resource}\" in API group \"{group}\" at the cluster scope");
            return;
        }

        if (watch)
        {
            await WatchAsync(context, resource, query);
        }
        else
        {
            await ListAsync(context, resource, query);
        }
    }

    private async Task ListAsync(HttpContext context, string resource, IQueryCollection query)
    {
        int limit = int.TryParse(query["limit"], out int l) && l > 0 ? l : int.MaxValue;
        string? token = query["continue"] is { Count: > 0 } c && c[0] is { Length: > 0 } t ? t : null;
        (string Resource, string Version, List<string> Items, int Offset) page;
        lock (_gate)
        {
            _requests.Add(token is null ? $"list {resource}" : $"list {resource} continue");
            if (token is null)
            {
                page = (resource, _version.ToString(System.Globalization.CultureInfo.InvariantCulture), [.. _objects[resource].Values], 0);
            }
            else if (!_pages.Remove(token, out page) || page.Resource != resource || ExpireNextContinue)
            {
                ExpireNextContinue = false;
                page = default;
            }
        }

        if (page.Items is null)
        {
            await StatusAsync(context, 410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
            return;
        }

        List<string> items = [.. page.Items.Skip(page.Offset).Take(limit)];
        string? next = null;
        if (page.Offset + items.Count < page.Items.Count)
        {
            next = Guid.NewGuid().ToString("N");
            lock (_gate)
            {
                _pages[next] = page with { Offset = page.Offset + items.Count };
            }
        }

        (string kind, string apiVersion, _) = Resources[resource];
        string meta = next is null ? $"{{\"resourceVersion\":\"{page.Version}\"}}" : $"{{\"resourceVersion\":\"{page.Version}\",\"continue\":\"{next}\"}}";
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync($"{{\"kind\":\"{kind}List\",\"apiVersion\":\"{apiVersion}\",\"metadata\":{meta},\"items\":[{string.Join(',', items)}]}}");
    }

    private async Task WatchAsync(HttpContext context, string resource, IQueryCollection query)
    {
        long from = long.TryParse(query["resourceVersion"], out long v) ? v : 0;
        int seconds = int.TryParse(query["timeoutSeconds"], out int s) && s > 0 ? s : 1800;
        var watcher = new Watcher(resource, context, query["allowWatchBookmarks"] == "true");
        bool gone;
        lock (_gate)
        {
            _requests.Add($"watch {resource} from {from}");
            gone = from < _compactedThrough;
            if (!gone)
            {
                // Under the lock: the history replayed and the live events after it, with no gap and no overlap.
                foreach ((long version, string r, string line) in _history.Where(h => h.Resource == resource && h.Version > from))
                {
                    watcher.Lines.Writer.TryWrite(line);
                }

                _watchers.Add(watcher);
            }
        }

        string tooOld = $"too old resource version: {from} ({_compactedThrough})";
        if (gone && Gone == GoneStyle.HttpStatus)
        {
            await StatusAsync(context, 410, "Expired", tooOld);
            return;
        }

        context.Response.ContentType = "application/json";
        // The headers go at once, as a real API server sends them: a quiet watch is still an answered one.
        await context.Response.StartAsync();
        await context.Response.Body.FlushAsync();
        if (gone)
        {
            await WriteLineAsync(context, Event("ERROR", StatusJson(410, "Expired", tooOld)));
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(TimeSpan.FromSeconds(seconds));
        try
        {
            await foreach (string line in watcher.Lines.Reader.ReadAllAsync(timeout.Token))
            {
                await WriteLineAsync(context, line);
            }
        }
        catch (OperationCanceledException)
        {
            // timeoutSeconds is up (an orderly end of the stream), or the connection was cut.
        }
        finally
        {
            lock (_gate)
            {
                _watchers.Remove(watcher);
            }
        }
    }

    private static async Task WriteLineAsync(HttpContext context, string line)
    {
        await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(line + "\n"));
        await context.Response.Body.FlushAsync();
    }

    // The library's default context reads a Status but cannot write one; its Status context can.
    private static string StatusJson(int code, string reason, string message) => System.Text.Json.JsonSerializer.Serialize(new V1Status
    {
        Kind = "Status", ApiVersion = "v1", Metadata = new V1ListMeta(), Status = "Failure", Message = message, Reason = reason, Code = code,
    }, StatusSourceGenerationContext.Default.V1Status);

    private static async Task StatusAsync(HttpContext context, int code, string reason, string message)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(StatusJson(code, reason, message));
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    private sealed class Watcher(string resource, HttpContext context, bool bookmarks)
    {
        public string Resource { get; } = resource;

        public HttpContext Context { get; } = context;

        public bool Bookmarks { get; } = bookmarks;

        public Channel<string> Lines { get; } = Channel.CreateUnbounded<string>();
    }
}
