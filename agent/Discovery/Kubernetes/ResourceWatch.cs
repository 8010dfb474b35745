using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using k8s;
using k8s.Models;

namespace NodeMesh.Discovery.Kubernetes;

/// <summary>How a <see cref="ResourceWatch{T, TList}"/> lists and watches.</summary>
internal sealed record ResourceWatchOptions(int PageSize, TimeSpan RequestTimeout, TimeSpan WatchTimeout, TimeSpan InitialBackoff, TimeSpan MaxBackoff);

/// <summary>
/// The list-and-watch of one resource over plain HTTP (the client library has no watch under AOT): a list in
/// pages (<c>limit</c>, <c>continue</c>) at one resourceVersion, then a watch from it
/// (<c>watch=1&amp;resourceVersion=RV&amp;allowWatchBookmarks=true&amp;timeoutSeconds=N</c>) read line by line, one
/// JSON event a line. The resourceVersion of every event, bookmarks included, is kept: a watch the server ends,
/// or a dropped connection, resumes from it (after a backoff when it failed); a 410 Gone (the HTTP status or an
/// ERROR event with a Status of code 410) or a malformed line lists again. Runs until cancelled; never throws
/// for the server's faults, it tells them as Failed events.
/// </summary>
internal sealed class ResourceWatch<T, TList>(KubernetesApiClient api, KubernetesResource<T, TList> resource, ResourceWatchOptions options)
    where T : class, IKubernetesObject<V1ObjectMeta>
    where TList : class, IItems<T>, IMetadata<V1ListMeta>
{
    /// <summary>A watch that the server ends sooner than this without a single event is retried after a backoff, not at once.</summary>
    private static readonly TimeSpan ShortestQuietWatch = TimeSpan.FromSeconds(1);

    public KubernetesResource<T, TList> Resource => resource;

    /// <summary>Lists and watches until <paramref name="stopping"/>, telling each event to <paramref name="onEvent"/> (on one task, in order).</summary>
    public async Task RunAsync(Action<ResourceEvent<T>> onEvent, CancellationToken stopping)
    {
        string version = "";
        bool mustList = true;
        TimeSpan backoff = TimeSpan.Zero;
        while (!stopping.IsCancellationRequested)
        {
            string reason;
            string error;
            try
            {
                if (mustList)
                {
                    (List<T> items, string listed) = await ListAsync(stopping);
                    version = listed;
                    mustList = false;
                    backoff = TimeSpan.Zero;
                    onEvent(new ResourceEvent<T>(ResourceEventKind.Listed, version, Items: items));
                }

                var watched = System.Diagnostics.Stopwatch.StartNew();
                int events = await WatchAsync(version, e =>
                {
                    version = e.ResourceVersion;
                    backoff = TimeSpan.Zero;
                    onEvent(e);
                }, stopping);
                if (events == 0 && watched.Elapsed < ShortestQuietWatch)
                {
                    backoff = Next(backoff);
                    await Task.Delay(backoff, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }

                continue;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (KubernetesApiException ex) when (ex.IsGone)
            {
                (reason, error, mustList) = ("gone", ex.Message, true);
            }
            catch (MalformedWatchException ex)
            {
                (reason, error, mustList) = ("malformed", ex.Message, true);
            }
            catch (KubernetesApiException ex)
            {
                reason = ex.Status switch { HttpStatusCode.Unauthorized => "unauthorized", HttpStatusCode.Forbidden => "forbidden", _ => "error" };
                error = ex.Message;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or TimeoutException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
            {
                (reason, error) = ("disconnected", $"{(mustList ? "list" : "watch")} {resource.Name}: {Describe(ex)}");
            }

            onEvent(new ResourceEvent<T>(ResourceEventKind.Failed, version, Reason: reason, Error: error));
            backoff = Next(backoff);
            await Task.Delay(backoff, stopping).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private TimeSpan Next(TimeSpan current) =>
        current == TimeSpan.Zero ? options.InitialBackoff : TimeSpan.FromTicks(Math.Min(current.Ticks * 2, options.MaxBackoff.Ticks));

    /// <summary>Every page of the collection, at the resourceVersion of the first.</summary>
    private async Task<(List<T> Items, string Version)> ListAsync(CancellationToken stopping)
    {
        var items = new List<T>();
        string? next = null;
        string version;
        do
        {
            string url = $"{resource.Path}?limit={options.PageSize.ToString(CultureInfo.InvariantCulture)}{(next is null ? "" : "&continue=" + Uri.EscapeDataString(next))}";
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stopping);
            deadline.CancelAfter(options.RequestTimeout);
            TList? page;
            try
            {
                using HttpResponseMessage response = await api.GetAsync(url, resource, streaming: false, deadline.Token);
                await using Stream body = await response.Content.ReadAsStreamAsync(deadline.Token);
                page = await JsonSerializer.DeserializeAsync(body, resource.ListJson, deadline.Token);
            }
            catch (JsonException ex)
            {
                throw new MalformedWatchException($"list {resource.Name}: the answer is not a {typeof(TList).Name}: {JsonError(ex)}", ex);
            }
            catch (OperationCanceledException ex) when (!stopping.IsCancellationRequested)
            {
                throw new TimeoutException($"no answer within {Contracts.Duration.Format(options.RequestTimeout)} (discovery.kubernetes.requestTimeout)", ex);
            }

            if (page?.Metadata?.ResourceVersion is not { Length: > 0 } listed)
            {
                throw new MalformedWatchException($"list {resource.Name}: the answer has no metadata.resourceVersion");
            }

            version = listed;
            items.AddRange(page.Items ?? []);
            next = page.Metadata.ContinueProperty is { Length: > 0 } more ? more : null;
        }
        while (next is not null);

        return (items, version);
    }

    /// <summary>One watch from <paramref name="version"/> until the server ends it (the count of events), or a failure (thrown).</summary>
    private async Task<int> WatchAsync(string version, Action<ResourceEvent<T>> onEvent, CancellationToken stopping)
    {
        int seconds = (int)Math.Max(1, options.WatchTimeout.TotalSeconds);
        string url = $"{resource.Path}?watch=1&resourceVersion={Uri.EscapeDataString(version)}&allowWatchBookmarks=true&timeoutSeconds={seconds.ToString(CultureInfo.InvariantCulture)}";
        // The server ends the watch after timeoutSeconds; silence much longer than that is a dead connection.
        TimeSpan idle = options.WatchTimeout + options.RequestTimeout;
        using var alive = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        alive.CancelAfter(options.RequestTimeout);
        HttpResponseMessage response;
        try
        {
            response = await api.GetAsync(url, resource, streaming: true, alive.Token);
        }
        catch (OperationCanceledException ex) when (!stopping.IsCancellationRequested)
        {
            throw new TimeoutException($"no answer within {Contracts.Duration.Format(options.RequestTimeout)} (discovery.kubernetes.requestTimeout)", ex);
        }

        using (response)
        {
            onEvent(new ResourceEvent<T>(ResourceEventKind.Watching, version));
            await using Stream body = await response.Content.ReadAsStreamAsync(alive.Token);
            using var reader = new StreamReader(body, Encoding.UTF8);
            int events = 0;
            while (true)
            {
                alive.CancelAfter(idle);
                string? line;
                try
                {
                    line = await reader.ReadLineAsync(alive.Token);
                }
                catch (OperationCanceledException ex) when (!stopping.IsCancellationRequested)
                {
                    throw new TimeoutException($"nothing from the server for {Contracts.Duration.Format(idle)}", ex);
                }

                if (line is null)
                {
                    return events;
                }

                if (line.Length == 0)
                {
                    continue;
                }

                onEvent(Parse(line, resource));
                events++;
            }
        }
    }

    /// <summary>One line of a watch stream (pure; an ERROR event is thrown as the API error it carries).</summary>
    /// <exception cref="MalformedWatchException">Not a watch event.</exception>
    /// <exception cref="KubernetesApiException">An ERROR event (<see cref="KubernetesApiException.IsGone"/> for 410).</exception>
    internal static ResourceEvent<T> Parse(string line, KubernetesResource<T, TList> resource)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(line);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String
                || !root.TryGetProperty("object", out JsonElement item) || item.ValueKind != JsonValueKind.Object)
            {
                throw new MalformedWatchException($"watch {resource.Name}: not a watch event (an object with a string 'type' and an object 'object'): {Excerpt(line)}");
            }

            string kind = type.GetString()!;
            if (kind == "ERROR")
            {
                V1Status? status = item.Deserialize(KubernetesJsonContext.Default.V1Status);
                int code = status?.Code ?? 500;
                throw new KubernetesApiException((HttpStatusCode)code, $"watch {resource.Name}: ERROR event {code} {status?.Reason}: {KubernetesApiClient.Bounded(status?.Message ?? "")}");
            }

            ResourceEventKind? parsed = kind switch
            {
                "ADDED" => ResourceEventKind.Added,
                "MODIFIED" => ResourceEventKind.Modified,
                "DELETED" => ResourceEventKind.Deleted,
                "BOOKMARK" => ResourceEventKind.Bookmark,
                _ => null,
            };
            if (parsed is not { } eventKind)
            {
                throw new MalformedWatchException($"watch {resource.Name}: unknown event type '{Contracts.Printable.Of(kind)}'");
            }

            T? value = item.Deserialize(resource.ItemJson);
            if (value?.Metadata?.ResourceVersion is not { Length: > 0 } version)
            {
                throw new MalformedWatchException($"watch {resource.Name}: {kind} event without metadata.resourceVersion");
            }

            return new ResourceEvent<T>(eventKind, version, eventKind == ResourceEventKind.Bookmark ? null : value);
        }
        catch (JsonException ex)
        {
            throw new MalformedWatchException($"watch {resource.Name}: a line that is not JSON ({JsonError(ex)}): {Excerpt(line)}", ex);
        }
    }

    private static string JsonError(JsonException ex) => ex.Message.Split(" Path:")[0].TrimEnd('.');

    private static string Excerpt(string line) => Contracts.Printable.Of(line.Length > 120 ? line[..120] + "…" : line);

    private static string Describe(Exception ex) => ex.InnerException is { } inner && ex is HttpRequestException ? $"{ex.Message} ({inner.Message})" : ex.Message;
}
