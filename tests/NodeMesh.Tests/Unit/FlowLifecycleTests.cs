using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using NodeMesh.Authz;
using NodeMesh.Contracts;
using NodeMesh.Copy;
using NodeMesh.Identity;
using NodeMesh.Proxy;
using NodeMesh.State;
using NodeMesh.Telemetry;

namespace NodeMesh.Tests.Unit;

/// <summary>A flow is in the manager's table from open to end, ends with one typed outcome, and is recorded exactly once.</summary>
public sealed class FlowLifecycleTests : IDisposable
{
    private static readonly SpiffeId Web = SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/web");
    private static readonly Workload Db = new("db", IPAddress.Parse("10.240.2.2"), SpiffeId.Parse("spiffe://cluster.local/ns/shop/sa/db"), "node1", null);

    private readonly FlowLog _log = new();
    private readonly MeshMetrics _metrics = new();
    private readonly AuthzMetrics _authzMetrics = new();
    private readonly ConnectionManager _connections;

    public FlowLifecycleTests()
    {
        var recorder = new FlowRecorder(_log, _metrics, NullLoggerFactory.Instance);
        _connections = new ConnectionManager(recorder, new Authorizer(_authzMetrics, NullLogger<Authorizer>.Instance));
    }

    public void Dispose()
    {
        _metrics.Dispose();
        _authzMetrics.Dispose();
    }

    [Fact]
    public async Task AFlowWhoseHandlerGaveNoOutcome_IsRecordedOnceAsFailed_EvenIfDisposedTwice()
    {
        Flow flow = _connections.Open("outbound", "tunnel", default);
        Assert.Equal(1, _connections.Count);

        await flow.DisposeAsync();
        await flow.DisposeAsync();

        FlowRecord record = Assert.Single(_log.Snapshot());
        Assert.Equal(FlowOutcome.Failed, record.Outcome);
        Assert.StartsWith("failed: ", record.Result, StringComparison.Ordinal);
        Assert.Equal(0, _connections.Count);
    }

    [Fact]
    public async Task TheFirstOutcomeStands_ARefusalIsNotOverwrittenByALaterFailure()
    {
        await using (Flow flow = _connections.Open("outbound", "local", default))
        {
            flow.Refuse("no route");
            flow.Fail("late bug");
            flow.Carried(new CopyResult(10, 20, null));
        }

        FlowRecord record = Assert.Single(_log.Snapshot());
        Assert.Equal(FlowOutcome.Refused, record.Outcome);
        Assert.Equal("refused: no route", record.Result);
        Assert.Equal(1, _log.Refused);
    }

    [Fact]
    public async Task CarriedFlows_AreOkOrAborted_AndInboundTunnelBytesAreCountedFromTheCallersSide()
    {
        await using (Flow ok = _connections.Open("inbound", "tunnel", default))
        {
            ok.Carried(new CopyResult(BytesFromClient: 5, BytesToClient: 700, Error: null));
        }

        await using (Flow broken = _connections.Open("outbound", "passthrough", default))
        {
            broken.Carried(new CopyResult(BytesFromClient: 3, BytesToClient: 0, Error: "connection reset"));
        }

        List<FlowRecord> records = _log.Snapshot();
        Assert.Equal(FlowOutcome.Ok, records[0].Outcome);
        Assert.Equal(700, records[0].BytesSent);
        Assert.Equal(5, records[0].BytesReceived);
        Assert.Equal(FlowOutcome.Aborted, records[1].Outcome);
        Assert.Equal("aborted: connection reset", records[1].Result);
        Assert.Equal(3, records[1].BytesSent);
    }

    [Fact]
    public async Task Admit_DeniesPlaintextToAStrictWorkload_WhateverThePolicies()
    {
        Workload strict = Db with { Mode = PeerMode.Strict };
        await using (Flow flow = _connections.Open("inbound", "plaintext", default))
        {
            AuthzDecision decision = _connections.Admit(flow, RegistrySnapshot.Empty, new AuthzRequest(strict, 5432, null, IPAddress.Parse("192.0.2.7")), "plaintext");
            Assert.False(decision.Allowed);
            Assert.Equal(Authorizer.StrictMode, decision.Policy);

            // Mesh traffic with an identity is up to the policies (none: allowed).
            await using Flow mesh = _connections.Open("inbound", "tunnel", default);
            Assert.True(_connections.Admit(mesh, RegistrySnapshot.Empty, new AuthzRequest(strict, 5432, Web, IPAddress.Parse("10.240.1.2")), "tunnel").Allowed);
            mesh.Carried(default);
        }

        FlowRecord record = Assert.Single(_log.Snapshot(), r => r.Path == "plaintext");
        Assert.Equal(FlowOutcome.Denied, record.Outcome);
        Assert.Equal("refused: denied: plaintext refused: db is STRICT (mesh traffic only)", record.Result);
    }

    [Fact]
    public async Task APolicyChange_ClosesTheAdmittedFlowsItNowDenies_OnlyThose_AndTheirRecordSaysWhy()
    {
        Flow admitted = _connections.Open("inbound", "tunnel", default);
        Assert.True(_connections.Admit(admitted, RegistrySnapshot.Empty, new AuthzRequest(Db, 5432, Web, IPAddress.Parse("10.240.1.2")), "tunnel").Allowed);
        Flow passthrough = _connections.Open("outbound", "passthrough", default);

        var errors = new List<string>();
        PolicySet denyWeb = PolicyCompiler.Compile(
            [new PolicyConfig { Name = "no-web", Action = "DENY", Rules = [new RuleConfig { From = new SourceConfig { Principals = [Web.Uri] } }] }], "cluster.local", errors);
        Assert.Empty(errors);
        List<(string Flow, AuthzDecision Decision)> closed = _connections.Reevaluate(new RegistrySnapshot([Db], new Dictionary<string, IPEndPoint>(), denyWeb));

        Assert.Single(closed);
        Assert.Equal("no-web", closed[0].Decision.Policy);
        Assert.True(admitted.Stopping.IsCancellationRequested);
        Assert.False(passthrough.Stopping.IsCancellationRequested);

        // Closing again (a second reload) does nothing more.
        Assert.Empty(_connections.Reevaluate(new RegistrySnapshot([], new Dictionary<string, IPEndPoint>(), denyWeb)));

        admitted.Carried(new CopyResult(1, 1, "operation cancelled"));
        await admitted.DisposeAsync();
        FlowRecord record = Assert.Single(_log.Snapshot());
        Assert.Equal(FlowOutcome.ClosedByPolicy, record.Outcome);
        Assert.StartsWith("aborted: closed by a policy change: denied by a DENY policy (policy no-web", record.Result, StringComparison.Ordinal);
        await passthrough.DisposeAsync();
    }

    [Fact]
    public async Task WhenEmpty_IsSignalledByTheLastFlowsEnd()
    {
        Assert.True(_connections.WhenEmptyAsync().IsCompleted);
        Flow first = _connections.Open("outbound", "tunnel", default);
        Flow second = _connections.Open("outbound", "tunnel", default);
        Task empty = _connections.WhenEmptyAsync();

        await first.DisposeAsync();
        Assert.False(empty.IsCompleted);
        await second.DisposeAsync();
        await empty.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task StopWith_StopsTheFlow_AndEndingReleasesTheRegistration()
    {
        using var workloadStopping = new CancellationTokenSource();
        Flow flow = _connections.Open("outbound", "local", default);
        flow.StopWith(workloadStopping.Token);
        workloadStopping.Cancel();
        Assert.True(flow.Stopping.IsCancellationRequested);
        flow.Refuse("workload removed");
        await flow.DisposeAsync();
        Assert.Equal(FlowOutcome.Refused, Assert.Single(_log.Snapshot()).Outcome);
    }
}
