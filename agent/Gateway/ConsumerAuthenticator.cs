using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.Extensions.Primitives;
using NodeMesh.Consumers;

namespace NodeMesh.Gateway;

/// <summary>Who the request's credential names: a consumer, or why not (the status and the reason to answer).</summary>
internal readonly record struct ConsumerVerdict(ConsumerRecord? Consumer, int Status, string Reason, string? Challenge)
{
    public bool Ok => Consumer is not null && Status == 0;
}

/// <summary>
/// A rule's consumer requirement, decided from the request and the consumers in force: an API key from the rule's
/// header or query parameter, else the listener-validated client certificate, names an active consumer the rule
/// allows. The key is taken off the request either way: the backend never sees it.
/// </summary>
internal sealed class ConsumerAuthenticator(IConsumerStore store, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public ConsumerVerdict Identify(HttpContext context, RuleConsumersConfig rule)
    {
        ConsumerDirectory directory = store.Current;
        string? key = TakeKey(context.Request, rule);
        if (!directory.Loaded)
        {
            return new ConsumerVerdict(null, StatusCodes.Status503ServiceUnavailable, $"the gateway has not read its consumers yet ({store.Describe})", null);
        }

        ConsumerMatch match;
        string credential;
        if (key is not null)
        {
            match = directory.ByApiKey(key, _time.GetUtcNow());
            credential = "API key";
        }
        else if (rule.ClientCertificates && context.Connection.ClientCertificate is { } certificate)
        {
            match = directory.ByCertificate(certificate);
            credential = "client certificate";
            if (match.Kind == ConsumerMatchKind.Unknown)
            {
                // The listener accepted the certificate: the caller is known, just not as a consumer.
                return new ConsumerVerdict(null, StatusCodes.Status403Forbidden, $"the client certificate ({certificate.Subject}) is not one of a consumer", null);
            }
        }
        else
        {
            return new ConsumerVerdict(null, StatusCodes.Status401Unauthorized, $"this route needs {Wanted(rule)}", Challenge(rule, null));
        }

        return match.Kind switch
        {
            ConsumerMatchKind.Found when rule.Allowed.Count > 0 && !rule.Allowed.Contains(match.Consumer!.Name, StringComparer.Ordinal) =>
                new ConsumerVerdict(null, StatusCodes.Status403Forbidden, $"consumer {match.Consumer.Name} may not use this route", null),
            ConsumerMatchKind.Found => new ConsumerVerdict(match.Consumer, 0, "", null),
            ConsumerMatchKind.NotActive => new ConsumerVerdict(null, StatusCodes.Status403Forbidden, $"consumer {match.Consumer!.Name} is {match.Consumer.State}", null),
            ConsumerMatchKind.KeyInvalid => new ConsumerVerdict(null, StatusCodes.Status401Unauthorized, "the API key is revoked or expired", Challenge(rule, "the API key is revoked or expired")),
            _ => new ConsumerVerdict(null, StatusCodes.Status401Unauthorized, $"the {credential} is not a consumer's", Challenge(rule, "unknown API key")),
        };
    }

    /// <summary>The key from the rule's header, else its query parameter; both taken off the request.</summary>
    private static string? TakeKey(HttpRequest request, RuleConsumersConfig rule)
    {
        string? key = null;
        if (rule.ApiKeyHeader.Length > 0 && request.Headers.TryGetValue(rule.ApiKeyHeader, out StringValues header))
        {
            key = header.Count == 1 ? header[0] : "";
            request.Headers.Remove(rule.ApiKeyHeader);
        }

        if (rule.ApiKeyQueryParameter.Length > 0 && request.Query.TryGetValue(rule.ApiKeyQueryParameter, out StringValues query))
        {
            key ??= query.Count == 1 ? query[0] : "";
            var kept = new QueryBuilder(request.Query.Where(p => p.Key != rule.ApiKeyQueryParameter).SelectMany(p => p.Value.Select(v => new KeyValuePair<string, string>(p.Key, v ?? ""))));
            request.QueryString = kept.ToQueryString();
        }

        return key;
    }

    private static string Wanted(RuleConsumersConfig rule)
    {
        var ways = new List<string>(3);
        if (rule.ApiKeyHeader.Length > 0)
        {
            ways.Add($"an API key in header {rule.ApiKeyHeader}");
        }

        if (rule.ApiKeyQueryParameter.Length > 0)
        {
            ways.Add($"an API key in query parameter {rule.ApiKeyQueryParameter}");
        }

        if (rule.ClientCertificates)
        {
            ways.Add("a consumer's client certificate");
        }

        return string.Join(" or ", ways);
    }

    /// <summary>No standard scheme exists for API keys; this one says where the key goes, as Kong's and others' do.</summary>
    private static string Challenge(RuleConsumersConfig rule, string? error) =>
        "ApiKey realm=\"nodemesh\"" + (rule.ApiKeyHeader.Length > 0 ? $", header=\"{rule.ApiKeyHeader}\"" : "")
        + (rule.ApiKeyQueryParameter.Length > 0 ? $", query=\"{rule.ApiKeyQueryParameter}\"" : "") + (error is null ? "" : $", error=\"{error}\"");
}
