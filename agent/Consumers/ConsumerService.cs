using NodeMesh.Contracts;

namespace NodeMesh.Consumers;

/// <summary>
/// The consumer commands of the local API and the admin API: each one a change of one consumer in the store (or a
/// listing), answered with the consumer as it now is and, where a key was issued, the key, this once.
/// </summary>
/// <param name="dailyQuota">A plan's daily quota (0: none), or null when there is no such plan.</param>
internal sealed class ConsumerService(IConsumerStore store, ConsumerUsage usage, Func<string, long?> dailyQuota, TimeProvider? time = null)
    : Microsoft.Extensions.Hosting.IHostedService
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Reads the consumers before the agent and its gateway start (etcd: begins reading them).</summary>
    public Task StartAsync(CancellationToken cancellationToken) => store.StartAsync(cancellationToken);

    /// <summary>The store and the counts are let go with the host's services (they outlive the gateway's drain).</summary>
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public static bool Handles(string command) => command.StartsWith("consumer-", StringComparison.Ordinal);

    public async Task<ApiResponse> HandleAsync(string command, ConsumerChange? change, CancellationToken cancellationToken) =>
        (await ExecuteAsync(command, change, cancellationToken)).Response;

    /// <summary>The command's answer, and its HTTP status for the admin API (200, 201 for a new consumer, 400, 404, 409, 503).</summary>
    public async Task<(ApiResponse Response, int Status)> ExecuteAsync(string command, ConsumerChange? change, CancellationToken cancellationToken)
    {
        if (command == "consumer-list")
        {
            return (Answer([.. store.Current.All]), 200);
        }

        if (change is null)
        {
            return (Refused("the request needs a consumer (its name, and what changes)"), 400);
        }

        if (ConsumerRules.NameError(change.Name) is { } nameError)
        {
            return (Refused(nameError), 400);
        }

        if (!store.Current.Loaded)
        {
            return (Refused($"the consumers are not read yet from the {store.Describe}; try again shortly"), 503);
        }

        DateTimeOffset now = _time.GetUtcNow();
        string name = change.Name;
        string? issued = null;
        try
        {
            if (change.Plan is { Length: > 0 } plan && dailyQuota(plan) is null)
            {
                return (Refused($"no plan named {Printable.Of(plan)} in gateway.plans"), 400);
            }

            ConsumerRecord? result;
            switch (command)
            {
                case "consumer-get":
                    result = store.Current.Find(name) ?? throw new ConsumerChangeException($"no consumer named {name}", ConsumerRefusal.NotFound);
                    break;
                case "consumer-create":
                    result = await store.ChangeAsync(name, c => ConsumerRules.Create(c, change, now), cancellationToken);
                    break;
                case "consumer-update":
                    result = await store.ChangeAsync(name, c => ConsumerRules.Update(c, change), cancellationToken);
                    break;
                case "consumer-enable":
                    result = await store.ChangeAsync(name, c => ConsumerRules.SetState(c, name, ConsumerStates.Active), cancellationToken);
                    break;
                case "consumer-disable":
                    result = await store.ChangeAsync(name, c => ConsumerRules.SetState(c, name, ConsumerStates.Disabled), cancellationToken);
                    break;
                case "consumer-delete":
                    ConsumerRecord deleted = store.Current.Find(name) ?? throw new ConsumerChangeException($"no consumer named {name}", ConsumerRefusal.NotFound);
                    await store.ChangeAsync(name, c => c is null ? throw new ConsumerChangeException($"no consumer named {name}", ConsumerRefusal.NotFound) : null, cancellationToken);
                    usage.Forget(name);
                    return (Answer([deleted]), 200);
                case "consumer-issue-key":
                    TimeSpan? validFor = Duration(change.ExpiresIn, "expiresIn");
                    result = await store.ChangeAsync(name, c => ConsumerRules.IssueKey(c, name, validFor, now, out issued), cancellationToken);
                    break;
                case "consumer-rotate-key":
                    string keyId = KeyId(change);
                    TimeSpan? newValidFor = Duration(change.ExpiresIn, "expiresIn");
                    TimeSpan grace = Duration(change.Grace, "grace") ?? TimeSpan.Zero;
                    result = await store.ChangeAsync(name, c => ConsumerRules.RotateKey(c, name, keyId, newValidFor, grace, now, out issued), cancellationToken);
                    break;
                case "consumer-revoke-key":
                    string revoked = KeyId(change);
                    result = await store.ChangeAsync(name, c => ConsumerRules.RevokeKey(c, name, revoked, now), cancellationToken);
                    break;
                default:
                    return (Refused($"unknown command '{Printable.Of(command)}'"), 400);
            }

            return (Answer(result is null ? [] : [result]) with { IssuedKey = issued }, command == "consumer-create" ? 201 : 200);
        }
        catch (ConsumerChangeException ex)
        {
            return (Refused(ex.Message), ex.Refusal switch { ConsumerRefusal.NotFound => 404, ConsumerRefusal.Conflict => 409, _ => 400 });
        }
        catch (ConsumerStoreException ex)
        {
            return (Refused(ex.Message), 503);
        }
    }

    /// <summary>A consumer as the API shows it, with this node's usage counts and its plan's quota.</summary>
    public ConsumerInfo Info(ConsumerRecord consumer) => consumer.ToInfo(usage.Of(consumer.Name, dailyQuota(consumer.Plan) ?? 0));

    private ApiResponse Answer(List<ConsumerRecord> consumers) => new() { Ok = true, Consumers = [.. consumers.Select(Info)] };

    private static ApiResponse Refused(string error) => new() { Ok = false, Error = error };

    private static string KeyId(ConsumerChange change) =>
        change.KeyId is { } id && ApiKeys.IsId(id) ? id : throw new ConsumerChangeException($"keyId '{Printable.Of(change.KeyId ?? "")}' must be a key's id (16 hex digits, as consumer show lists them)");

    private static TimeSpan? Duration(string? text, string field)
    {
        if (text is null)
        {
            return null;
        }

        return Contracts.Duration.TryParse(text, out TimeSpan value, out string? error) && value > TimeSpan.Zero
            ? value
            : throw new ConsumerChangeException($"{field}: {error ?? "must be more than 0"}");
    }
}
