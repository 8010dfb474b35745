using NodeMesh.Tests.Netns;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// TLS to a plain backend outside the mesh (BackendTLSPolicy): nginx over TLS with a certificate of a private CA;
/// the gateway checks it against the policy's CA file and host name, and refuses a backend whose certificate does
/// not hold the name the policy gives, or that the CA did not sign.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayBackendTlsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task PlainBackendOverTls_IsVerifiedByThePolicysCaAndName()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 1, podsPerNode: 1, output);
        string dir = Path.Combine(mesh.WorkDir, "backend-tls");
        Directory.CreateDirectory(dir);
        await SignedCertificateAsync(dir, "backends", "legacy.example.com", "serverAuth");
        await SignedCertificateAsync(dir, "others", "unrelated.example.com", "serverAuth");
        foreach (int port in new[] { 8443, 8444, 8445 })
        {
            await NginxServer.StartAsync(mesh.Ext, $"legacy{port}", port, listenOptions: "ssl",
                serverDirectives: $"ssl_certificate {dir}/legacy.example.com.pem; ssl_certificate_key {dir}/legacy.example.com.key;");
        }

        string Route(string name, int port) =>
            $$"""{ "name": "{{name}}", "hostnames": [ "{{name}}.example.com" ], "rules": [ { "backendRefs": [ { "address": "10.231.0.200:{{port}}" } ] } ] }""";
        string gateway = $$"""
            {
              "listeners": [ { "name": "web", "address": "10.231.0.1", "port": 8080 } ],
              "httpRoutes": [ {{Route("good", 8443)}}, {{Route("misnamed", 8444)}}, {{Route("untrusted", 8445)}} ],
              "backendPolicies": [
                { "backend": "10.231.0.200:8443", "tls": { "hostname": "legacy.example.com", "caFile": "{{dir}}/backends-ca.pem" } },
                { "backend": "10.231.0.200:8444", "tls": { "hostname": "other.example.com", "caFile": "{{dir}}/backends-ca.pem" } },
                { "backend": "10.231.0.200:8445", "tls": { "hostname": "legacy.example.com", "caFile": "{{dir}}/others-ca.pem" } }
              ]
            }
            """;
        AgentProcess agent = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c => c.Gateway = Parse(gateway));
        Task<HttpAnswer> Get(string name) => CurlAsync(mesh, "--resolve", $"{name}.example.com:8080:10.231.0.1", $"http://{name}.example.com:8080/");

        HttpAnswer good = await Get("good");
        Assert.True(good is { Status: 200, ServedBy: "legacy8443" }, agent.Explain($"TLS to the backend, verified by the policy's CA and name\n{good}"));
        foreach (string refused in new[] { "misnamed", "untrusted" })
        {
            HttpAnswer answer = await Get(refused);
            Assert.True(answer.Status == 502 && answer.ServedBy is null, agent.Explain($"{refused}: a backend certificate the policy does not accept must be refused\n{answer}"));
        }

        Assert.True(await agent.WaitForOutputAsync("route misnamed/0 to 10.231.0.200:8444 failed"), agent.Explain("the refusal must be logged"));
    }
}
