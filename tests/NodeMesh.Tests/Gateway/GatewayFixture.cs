using System.Text.Json;
using NodeMesh.Config;
using NodeMesh.Gateway;
using NodeMesh.Tests.Netns;

namespace NodeMesh.Tests.Gateway;

/// <summary>What the gateway tests share: the gateway section from JSON as an operator writes it, and curl from the external host.</summary>
internal static class GatewayFixture
{
    public const string GatewayIdentity = $"spiffe://{Topology.TrustDomain}/ns/nodemesh-system/sa/gateway";

    /// <summary>The gateway section, read with the agent's own JSON context (so the test writes what a file would hold).</summary>
    public static GatewayConfig Parse(string json) =>
        JsonSerializer.Deserialize(json, ConfigJsonContext.Default.GatewayConfig) ?? throw new InvalidOperationException("null gateway");

    /// <summary>A mesh service: a virtual address, port 80 to the endpoints' 80.</summary>
    public static ServiceConfig Service(string name, int index, params Pod[] endpoints) => new()
    {
        Name = name,
        Addresses = [$"10.96.0.{index}"],
        Ports = [new ServicePortConfig { Port = 80 }],
        Endpoints = [.. endpoints.Select(p => p.Name)],
    };

    /// <summary>
    /// A CA named <paramref name="ca"/> (DIR/CA-ca.pem, made if missing) and a certificate for <paramref name="name"/>
    /// it signed (DIR/NAME.pem, .key), for <paramref name="usage"/> (clientAuth or serverAuth), the name as its DNS SAN.
    /// </summary>
    public static async Task SignedCertificateAsync(string dir, string ca, string name, string usage)
    {
        string caKey = Path.Combine(dir, ca + "-ca.key"), caPem = Path.Combine(dir, ca + "-ca.pem");
        string key = Path.Combine(dir, name + ".key"), csr = Path.Combine(dir, name + ".csr"), pem = Path.Combine(dir, name + ".pem");
        string ext = Path.Combine(dir, name + ".ext");
        TimeSpan t = TimeSpan.FromSeconds(30);
        if (!File.Exists(caPem))
        {
            await Command.RunCheckedAsync(t, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out", caPem,
                "-days", "2", "-subj", "/CN=" + ca + " CA");
        }

        await Command.RunCheckedAsync(t, "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name);
        await File.WriteAllTextAsync(ext, $"extendedKeyUsage={usage}\nsubjectAltName=DNS:{name}\n");
        await Command.RunCheckedAsync(t, "openssl", "x509", "-req", "-in", csr, "-CA", caPem, "-CAkey", caKey, "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", ext);
    }

    /// <summary>curl in the external host: the status, the response headers (lower-case names) and the body.</summary>
    public static async Task<HttpAnswer> CurlAsync(Topology mesh, params string[] args)
    {
        CommandResult result = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(30), "curl", ["-s", "-S", "-i", "--max-time", "15", .. args]);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"curl failed: {result}");
        }

        return HttpAnswer.Parse(result.Stdout);
    }
}

/// <summary>One HTTP answer as curl -i printed it (the last one, after any 100 Continue).</summary>
internal sealed record HttpAnswer(int Status, string Version, IReadOnlyDictionary<string, string> Headers, string Body)
{
    public static HttpAnswer Parse(string output)
    {
        string text = output.Replace("\r\n", "\n", StringComparison.Ordinal);
        int split = text.IndexOf("\n\n", StringComparison.Ordinal);
        string head = split < 0 ? text : text[..split];
        string body = split < 0 ? "" : text[(split + 2)..];
        string[] lines = head.Split('\n');
        string[] status = lines[0].Split(' ', 3);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                string name = line[..colon].Trim();
                string value = line[(colon + 1)..].Trim();
                headers[name] = headers.TryGetValue(name, out string? earlier) ? earlier + ", " + value : value;
            }
        }

        return new HttpAnswer(int.Parse(status[1], System.Globalization.CultureInfo.InvariantCulture), status[0], headers, body);
    }

    /// <summary>The backend that answered (nginx's served-by=), or null.</summary>
    public string? ServedBy => Field("served-by");

    /// <summary>A field of the echo line (<c>name=value</c>, up to the next space).</summary>
    public string? Field(string name)
    {
        foreach (string part in Body.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.StartsWith(name + "=", StringComparison.Ordinal))
            {
                return part[(name.Length + 1)..];
            }
        }

        return null;
    }

    public override string ToString() => $"{Version} {Status}\n{string.Join("\n", Headers.Select(h => $"{h.Key}: {h.Value}"))}\n\n{Body}";
}
