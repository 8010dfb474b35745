using NodeMesh.Tests.Netns;
using NodeMesh.Tests.Telemetry;
using Xunit.Abstractions;
using static NodeMesh.Tests.Gateway.GatewayFixture;

namespace NodeMesh.Tests.Gateway;

/// <summary>
/// gRPC through the gateway, HTTP/2 end to end: a real gRPC client (python3-grpcio) outside, a GRPCRoute matching
/// the service, a gRPC server in a pod on another node reached through the tunnel as cleartext HTTP/2; unary and
/// server-streaming calls work and a server's error status (in the trailers) reaches the client. Health checks
/// speak the backend's protocol too: the gRPC server, which does not speak HTTP/1.1, passes them until it stops.
/// </summary>
[Collection(NetnsCollection.Name)]
public sealed class GatewayGrpcTests(ITestOutputHelper output)
{
    private const string Gateway = """
        {
          "listeners": [ { "name": "grpc", "address": "10.231.0.1", "port": 8081, "protocol": "H2c" } ],
          "grpcRoutes": [
            { "name": "echo", "hostnames": [ "grpc.example.com" ], "rules": [
                { "name": "all", "matches": [ { "method": { "service": "test.Echo" } } ], "backendRefs": [ { "name": "echo", "port": 50051 } ] } ] }
          ],
          "backendPolicies": [ { "backend": "echo", "protocol": "H2c",
                                 "healthCheck": { "path": "/healthz", "interval": "300ms", "timeout": "1s", "unhealthyThreshold": 1 } } ]
        }
        """;

    [Fact]
    public async Task GrpcCalls_GoThroughTheGatewayAndTheTunnel_WithStreamsAndStatuses()
    {
        await using Topology mesh = await Topology.CreateAsync(nodes: 2, podsPerNode: 1, output);
        Pod server = mesh.Pod(2, 1);
        BackgroundProcess grpc = BackgroundProcess.Start(server, "/usr/bin/python3", TestPaths.GatewayScript("grpc-echo.py"), "serve", "50051", "g1");
        Assert.True(await grpc.WaitForOutputAsync("listening", TimeSpan.FromSeconds(20)), $"the gRPC server did not start: {grpc.Output}");
        var echo = Service("echo", 1, server);
        echo.Ports = [new Config.ServicePortConfig { Port = 50051 }];
        await mesh.StartAgentAsync(mesh.Node(2), s => s.Customize = c => c.Services = [echo]);
        AgentProcess gateway = await mesh.StartAgentAsync(mesh.Node(1), s => s.Customize = c =>
        {
            c.Services = [echo];
            c.Gateway = Parse(Gateway);
        });

        CommandResult call = await mesh.Ext.RunAsync(TimeSpan.FromSeconds(60), "/usr/bin/python3", TestPaths.GatewayScript("grpc-echo.py"), "call", "10.231.0.1:8081", "grpc.example.com");
        Assert.True(call.Stdout.Trim() == "say=g1:_hello stream=3 fail=NOT_FOUND", gateway.Explain($"gRPC through the gateway: {call}"));
        Assert.True(await gateway.WaitForOutputAsync("request POST grpc.example.com/test.Echo/Say HTTP/2 route echo/all upstream echo:50051"),
            gateway.Explain("the call must be in the access log, as HTTP/2"));

        // The server answers a GET over HTTP/2 and closes an HTTP/1.1 connection: checks made over HTTP/1.1 would
        // all fail, over h2c they pass (several ran by now), until the server is gone.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        IReadOnlyList<PrometheusSample> scrape = await AgentMetrics.ScrapeAsync(mesh, 1);
        Assert.True(AgentMetrics.Value(scrape, "nodemesh_gateway_health_check_failures_total", new Dictionary<string, string> { ["backend"] = "echo:50051" }) is null or 0,
            gateway.Explain($"health checks of an H2c backend must speak HTTP/2\n{AgentMetrics.Describe(scrape, "nodemesh_gateway")}"));
        Assert.False(gateway.Output.Contains("is unhealthy", StringComparison.Ordinal), gateway.Explain("the serving gRPC endpoint must stay healthy"));
        await grpc.DisposeAsync();
        Assert.True(await gateway.WaitForOutputAsync($"backend echo:50051: endpoint {server.Name} is unhealthy"), gateway.Explain("a stopped gRPC server must fail its checks"));
    }
}
