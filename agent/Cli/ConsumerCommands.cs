using System.Globalization;
using NodeMesh.App;
using NodeMesh.Contracts;

namespace NodeMesh.Cli;

/// <summary><c>nodemesh consumer create|list|show|update|enable|disable|delete|issue-key|rotate-key|revoke-key</c>, through the agent's API socket.</summary>
internal static class ConsumerCommands
{
    public static async Task<int> RunAsync(string path, Options options)
    {
        string command = "consumer-" + path["consumer ".Length..] switch
        {
            "show" => "get",
            var verb => verb,
        };
        if (command == "consumer-list")
        {
            ApiResponse listed = await AgentSocket.SendAsync(options, new ApiRequest { Command = command });
            OutputFormat format = Output.Format(options);
            List<ConsumerInfo> consumers = [.. listed.Consumers ?? []];
            Console.Write(Output.Serialized(consumers, ApiJsonContext.Default.ListConsumerInfo, format) ?? ListTable(consumers).Render(Output.IsWide(format)));
            return 0;
        }

        var change = new ConsumerChange
        {
            Name = options.Required("name"),
            Plan = options.Get("plan"),
            Description = options.Get("description"),
            Certificates = options.GetAll("certificate") is { Count: > 0 } certificates ? certificates : null,
            State = options.Flag("pending") ? ConsumerStates.Pending : null,
            KeyId = options.Get("key"),
            ExpiresIn = options.Get("expires-in"),
            Grace = options.Get("grace"),
        };
        ApiResponse response = await AgentSocket.SendAsync(options, new ApiRequest { Command = command, Consumer = change });
        ConsumerInfo? consumer = response.Consumers is [var first, ..] ? first : null;
        if (response.IssuedKey is { } key)
        {
            // The key alone on stdout (a script takes it with $(...)); the warning on stderr.
            Console.WriteLine(key);
            await Console.Error.WriteLineAsync($"the API key of consumer {change.Name}: store it now, it is not shown again");
            return 0;
        }

        if (command == "consumer-get")
        {
            OutputFormat format = Output.Format(options);
            Console.Write(Output.Serialized(consumer!, ApiJsonContext.Default.ConsumerInfo, format) ?? Show(consumer!));
            return 0;
        }

        Console.WriteLine(command switch
        {
            "consumer-create" => $"consumer {change.Name} created ({consumer?.State})",
            "consumer-delete" => $"consumer {change.Name} deleted",
            "consumer-revoke-key" => $"key {change.KeyId} of consumer {change.Name} revoked",
            _ => $"consumer {change.Name} {(command == "consumer-update" ? "updated" : consumer?.State)}",
        });
        return 0;
    }

    internal static Table ListTable(IEnumerable<ConsumerInfo> consumers)
    {
        var table = new Table(new Column("NAME"), new Column("STATE"), new Column("PLAN"), new Column("KEYS"), new Column("TODAY"), new Column("QUOTA"),
            new Column("CERTIFICATES", WideOnly: true), new Column("LAST SEEN", WideOnly: true), new Column("DESCRIPTION", WideOnly: true));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        foreach (ConsumerInfo c in consumers)
        {
            table.Add(c.Name, c.State, c.Plan.Length > 0 ? c.Plan : "-", c.Keys.Count(k => Valid(k, now)).ToString(CultureInfo.InvariantCulture),
                (c.Usage?.RequestsToday ?? 0).ToString(CultureInfo.InvariantCulture), c.Usage?.DailyQuota?.ToString(CultureInfo.InvariantCulture) ?? "-",
                c.Certificates.Count > 0 ? string.Join(",", c.Certificates) : "-", c.Usage?.LastSeen?.ToString("u", CultureInfo.InvariantCulture) ?? "-",
                c.Description.Length > 0 ? c.Description : "-");
        }

        return table;
    }

    internal static string Show(ConsumerInfo c)
    {
        var text = new System.Text.StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"consumer {c.Name}: {c.State}, plan {(c.Plan.Length > 0 ? c.Plan : "none")}, created {c.Created:u}\n");
        if (c.Description.Length > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"  {c.Description}\n");
        }

        if (c.Usage is { } usage)
        {
            text.Append(CultureInfo.InvariantCulture, $"  requests today ({usage.Day}): {usage.RequestsToday}{(usage.DailyQuota is { } quota ? $" of {quota}" : "")}; in all {usage.Requests}, refused {usage.Refused}\n");
        }

        foreach (string certificate in c.Certificates)
        {
            text.Append(CultureInfo.InvariantCulture, $"  certificate {certificate}\n");
        }

        DateTimeOffset now = DateTimeOffset.UtcNow;
        var keys = new Table(new Column("KEY"), new Column("STATE"), new Column("CREATED"), new Column("EXPIRES"));
        foreach (ApiKeyInfo key in c.Keys)
        {
            keys.Add(key.Id, key.RevokedAt is not null ? "revoked" : Valid(key, now) ? "valid" : "expired", key.Created.ToString("u", CultureInfo.InvariantCulture),
                key.ExpiresAt?.ToString("u", CultureInfo.InvariantCulture) ?? "-");
        }

        text.Append(c.Keys.Count == 0 ? "  no keys (nodemesh consumer issue-key)\n" : keys.Render(wide: false));
        return text.ToString();
    }

    private static bool Valid(ApiKeyInfo key, DateTimeOffset now) => key.RevokedAt is null && (key.ExpiresAt is not { } expires || now < expires);
}
