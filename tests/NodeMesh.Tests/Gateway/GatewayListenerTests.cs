using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// The gateway's listeners with real clients: TLS with a certificate chosen by SNI (openssl s_client), HTTP/2 by
/// ALPN and HTTP/1.1 on the same TLS port, cleartext HTTP/2 with prior knowledge on its own port (curl), TLS
/// below 1.2 refused, client certificates required or optional, two listeners on one port told apart by host name, and a certificate replaced on disk taken up without
/// a restart.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayListenerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Tls_ChoosesTheCertificateBySni_SpeaksHttp2AndHttp1_H2cHasItsPort_AndAReplacedCertificateIsTakenUp()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        Pod web = mesh.Pod(1, 1);
        await NginxServer.StartAsync(web, "web", 80);
        string dir = Path.Combine(mesh.WorkDir, "gateway-tls");
        Directory.CreateDirectory(dir);
        foreach (string name in new[] { "a.example.com", "b.example.com" })
        {
            await SelfSignedAsync(dir, name);
        }

        // Mutual TLS at the edge: a client CA, a client certificate it signed, and one from a CA the listener does not know.
        await SignedCertificateAsync(dir, "clients", "client.example.com", "clientAuth");
        await SignedCertificateAsync(dir, "strangers", "stranger.example.com", "clientAuth");

        string gateway = $$"""
            {
              "listeners": [
                { "name": "tls", "address": "{{mesh.Node(1).Ip}}", "port": 8443, "protocol": "Https",
                  "tls": { "certificates": [ { "certFile": "{{dir}}/a.example.com.pem", "keyFile": "{{dir}}/a.example.com.key" },
                                             { "certFile": "{{dir}}/b.example.com.pem", "keyFile": "{{dir}}/b.example.com.key" } ] },
                  "http3": true },
                { "name": "mtls", "address": "{{mesh.Node(1).Ip}}", "port": 8444, "protocol": "Https",
                  "tls": { "certificates": [ { "certFile": "{{dir}}/b.example.com.pem", "keyFile": "{{dir}}/b.example.com.key" } ],
                           "clientValidation": { "caFile": "{{dir}}/clients-ca.pem" } } },
                { "name": "mtls-optional", "address": "{{mesh.Node(1).Ip}}", "port": 8445, "protocol": "Https",
                  "tls": { "certificates": [ { "certFile": "{{dir}}/b.example.com.pem", "keyFile": "{{dir}}/b.example.com.key" } ],
                           "clientValidation": { "caFile": "{{dir}}/clients-ca.pem", "optional": true } } },
                { "name": "grpc", "address": "{{mesh.Node(1).Ip}}", "port": 8081, "protocol": "H2c" },
                { "name": "shared-any", "address": "{{mesh.Node(1).Ip}}", "port": 8082 },
                { "name": "shared-foo", "address": "{{mesh.Node(1).Ip}}", "port": 8082, "hostname": "*.foo.example.com" },
                { "name": "loopback", "address": "127.0.0.1", "port": 8082 }
              ],
              "httpRoutes": [
                { "name": "all", "listeners": [ "tls", "mtls", "mtls-optional", "grpc" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ] } ] },
                { "name": "any-host", "listeners": [ "shared-any" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                  "filters": [ { "type": "ResponseHeaderModifier", "responseHeaderModifier": { "set": [ { "name": "x-listener", "value": "any" } ] } } ] } ] },
                { "name": "foo-hosts", "listeners": [ "shared-foo" ], "rules": [ { "backendRefs": [ { "name": "web", "port": 80 } ],
                  "filters": [ { "type": "ResponseHeaderModifier", "responseHeaderModifier": { "set": [ { "name": "x-listener", "value": "foo" } ] } } ] } ] }
              ]
            }
            """;
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [Service("web", 1, web)];
            c.Gateway = Parse(gateway);
        });
        string at = $"{mesh.Node(1).Ip}:8443";

        Assert.Equal("b.example.com", await PresentedNameAsync(mesh, at, "b.example.com"));
        Assert.Equal("a.example.com", await PresentedNameAsync(mesh, at, "a.example.com"));
        // No SNI, or a name no certificate holds: the first certificate.
        Assert.Equal("a.example.com", await PresentedNameAsync(mesh, at, null));
        Assert.Equal("a.example.com", await PresentedNameAsync(mesh, at, "c.example.com"));

        string[] resolve = ["--resolve", $"b.example.com:8443:{mesh.Node(1).Ip}", "--cacert", $"{dir}/b.example.com.pem"];
        HttpAnswer h2 = await CurlAsync(mesh, [.. resolve, "--http2", "https://b.example.com:8443/x"]);
        Assert.True(h2 is { Status: 200, Version: "HTTP/2", ServedBy: "web" }, agent.Explain($"HTTP/2 over TLS (ALPN h2)\n{h2}"));
        Assert.Equal("https", h2.Field("xfp"));
        HttpAnswer h1 = await CurlAsync(mesh, [.. resolve, "--http1.1", "https://b.example.com:8443/x"]);
        Assert.True(h1 is { Status: 200, Version: "HTTP/1.1", ServedBy: "web" }, agent.Explain($"HTTP/1.1 over TLS\n{h1}"));
        HttpAnswer h2c = await CurlAsync(mesh, "--http2-prior-knowledge", $"http://{mesh.Node(1).Ip}:8081/y");
        Assert.True(h2c is { Status: 200, Version: "HTTP/2", ServedBy: "web" }, agent.Explain($"h2c with prior knowledge\n{h2c}"));

        // Two listeners on one port, told apart by host name: each request goes to the routes of the most specific
        // listener that names its host, never to the other's.
        foreach ((string host, string expected) in new[] { ("bar.example.com", "any"), ("x.foo.example.com", "foo"), ("foo.example.com", "any") })
        {
            HttpAnswer shared = await CurlAsync(mesh, "-H", $"Host: {host}", $"http://{mesh.Node(1).Ip}:8082/");
            Assert.True(shared is { Status: 200, ServedBy: "web" } && shared.Headers.GetValueOrDefault("x-listener") == expected,
                agent.Explain($"{host} on the shared port must be served by listener shared-{expected}'s route\n{shared}"));
        }

        // The same port on another address is another socket, with its own (here: no) routes.
        CommandResult loopback = await mesh.Node(1).RunAsync("curl", "-s", "-w", "STATUS=%{http_code}", "-H", "Host: x.foo.example.com", "http://127.0.0.1:8082/");
        Assert.True(loopback.Stdout.EndsWith("STATUS=404", StringComparison.Ordinal), agent.Explain($"the loopback listener on port 8082 has no routes: {loopback}"));

        // HTTP/3 needs QUIC (libmsquic): where it is missing the agent says so and serves the rest.
        if (!System.Net.Quic.QuicListener.IsSupported)
        {
            Assert.True(await agent.WaitForOutputAsync("listener tls: HTTP/3 unavailable"), agent.Explain("a listener asking for HTTP/3 without QUIC must be reported"));
        }

        // Client certificates: one the CA signed is served (the backend is told who it names); none, or a stranger's, is refused.
        string[] mtls = ["--resolve", $"b.example.com:8444:{mesh.Node(1).Ip}", "--cacert", $"{dir}/b.example.com.pem", "https://b.example.com:8444/"];
        HttpAnswer admitted = await CurlAsync(mesh, ["--cert", $"{dir}/client.example.com.pem", "--key", $"{dir}/client.example.com.key", .. mtls]);
        Assert.True(admitted is { Status: 200, ServedBy: "web" }, agent.Explain($"a client certificate of the CA must be served\n{admitted}"));
        Assert.Contains("Subject=\"CN=client.example.com\"", admitted.Body, StringComparison.Ordinal);
        CommandResult anonymous = await mesh.Ext.RunAsync("curl", ["-s", "-S", "--max-time", "10", .. mtls]);
        Assert.True(!anonymous.Succeeded && !anonymous.Stdout.Contains("served-by", StringComparison.Ordinal), $"no client certificate must be refused\n{anonymous}");
        CommandResult stranger = await mesh.Ext.RunAsync("curl", ["-s", "-S", "--max-time", "10", "--cert", $"{dir}/stranger.example.com.pem", "--key", $"{dir}/stranger.example.com.key", .. mtls]);
        Assert.True(!stranger.Succeeded && !stranger.Stdout.Contains("served-by", StringComparison.Ordinal), $"a certificate of another CA must be refused\n{stranger}");
        // Optional client certificates: a client without one is served (and the backend told of none), one the CA
        // signed is served and named, a stranger's is still refused.
        string[] optional = ["--resolve", $"b.example.com:8445:{mesh.Node(1).Ip}", "--cacert", $"{dir}/b.example.com.pem", "https://b.example.com:8445/"];
        HttpAnswer withoutCertificate = await CurlAsync(mesh, optional);
        Assert.True(withoutCertificate is { Status: 200, ServedBy: "web" }, agent.Explain($"an optional client certificate: a client without one must be served\n{withoutCertificate}"));
        Assert.DoesNotContain("Subject=", withoutCertificate.Body, StringComparison.Ordinal);
        HttpAnswer withCertificate = await CurlAsync(mesh, ["--cert", $"{dir}/client.example.com.pem", "--key", $"{dir}/client.example.com.key", .. optional]);
        Assert.True(withCertificate is { Status: 200, ServedBy: "web" }, agent.Explain($"an optional client certificate the CA signed must be served\n{withCertificate}"));
        Assert.Contains("Subject=\"CN=client.example.com\"", withCertificate.Body, StringComparison.Ordinal);
        CommandResult optionalStranger = await mesh.Ext.RunAsync("curl", ["-s", "-S", "--max-time", "10", "--cert", $"{dir}/stranger.example.com.pem", "--key", $"{dir}/stranger.example.com.key", .. optional]);
        Assert.True(!optionalStranger.Succeeded && !optionalStranger.Stdout.Contains("served-by", StringComparison.Ordinal), $"optional or not, a certificate of another CA must be refused\n{optionalStranger}");

        // A client's own X-Forwarded-Client-Cert never reaches the backend.
        HttpAnswer forged = await CurlAsync(mesh, [.. resolve, "-H", "X-Forwarded-Client-Cert: Subject=\"CN=admin\"", "https://b.example.com:8443/x"]);
        Assert.DoesNotContain("CN=admin", forged.Body, StringComparison.Ordinal);

        CommandResult old = await mesh.Ext.RunAsync("openssl", "s_client", "-connect", at, "-servername", "b.example.com", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0");
        Assert.True(!old.Stdout.Contains("BEGIN CERTIFICATE", StringComparison.Ordinal), $"TLS 1.1 must be refused\n{old}");

        // A renewed certificate (a new key, as cert-manager writes it) is served without a restart.
        string before = await FingerprintAsync(mesh, at, "b.example.com");
        await SelfSignedAsync(dir, "b.example.com");
        string after = before;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (after == before && watch.Elapsed < TimeSpan.FromSeconds(15))
        {
            await Task.Delay(500);
            after = await FingerprintAsync(mesh, at, "b.example.com");
        }

        Assert.True(after != before, agent.Explain($"the replaced certificate of b.example.com must be served within 15 s (still {before})"));
        Assert.True(await agent.WaitForOutputAsync("listener tls's certificates reloaded"), agent.Explain("the reload must be logged"));

        // A broken replacement keeps the working one in force, and says so.
        await File.WriteAllTextAsync($"{dir}/a.example.com.pem", "not a certificate");
        Assert.True(await agent.WaitForOutputAsync($"cannot be used ({dir}/a.example.com.pem with", TimeSpan.FromSeconds(15)), agent.Explain("a broken certificate file must be reported, naming it"));
        Assert.Equal("a.example.com", await PresentedNameAsync(mesh, at, "a.example.com"));
    }

    private static async Task SelfSignedAsync(string dir, string name)
    {
        string temp = Path.Combine(dir, "new-" + name);
        await Command.RunCheckedAsync(TimeSpan.FromSeconds(30), "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", temp + ".key", "-out", temp + ".pem", "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name);
        // Key first, then certificate, each replaced whole (rename): a reader never sees half a file.
        File.Move(temp + ".key", Path.Combine(dir, name + ".key"), overwrite: true);
        File.Move(temp + ".pem", Path.Combine(dir, name + ".pem"), overwrite: true);
    }

    /// <summary>The CN of the certificate the listener presents for <paramref name="sni"/> (null: no SNI sent).</summary>
    private static async Task<string> PresentedNameAsync(Topology mesh, string at, string? sni)
    {
        CommandResult result = await mesh.Ext.RunAsync("sh", "-c",
            $"openssl s_client -connect {at} {(sni is null ? "-noservername" : "-servername " + sni)} </dev/null 2>/dev/null | openssl x509 -noout -subject -nameopt multiline");
        string line = result.Stdout.Split('\n').FirstOrDefault(l => l.Contains("commonName", StringComparison.Ordinal)) ?? throw new InvalidOperationException($"no certificate: {result}");
        return line[(line.IndexOf('=', StringComparison.Ordinal) + 1)..].Trim();
    }

    private static async Task<string> FingerprintAsync(Topology mesh, string at, string sni) =>
        (await mesh.Ext.RunAsync("sh", "-c", $"openssl s_client -connect {at} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256")).Stdout.Trim();
}
