using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Testing;
using NodeMesh.Sockets;

namespace NodeMesh.Tests.Sockets;

public class AcceptFailuresTests
{
    private static readonly IPEndPoint Listener = IPEndPoint.Parse("10.0.0.1:15008");

    [Fact]
    public void AlternatingFailuresAndAccepts_LogOneRunAndItsRecovery_NotTwoLinesPerAccept()
    {
        var logger = new FakeLogger();
        var failures = new AcceptFailures("tunnel", Listener, logger, metrics: null);

        failures.Report(SocketError.TooManyOpenSockets, TimeSpan.FromMilliseconds(10));
        failures.Recovered();
        for (int i = 0; i < 50; i++)
        {
            failures.Report(SocketError.TooManyOpenSockets, TimeSpan.FromMilliseconds(10));
            failures.Recovered();
        }

        IReadOnlyList<FakeLogRecord> lines = logger.Collector.GetSnapshot();
        Assert.Equal(["tunnel listener 10.0.0.1:15008: accept failed (TooManyOpenSockets); retrying in 10 ms (0 more failures since the last report)",
            "tunnel listener 10.0.0.1:15008: accepting again after 1 failed accepts"], lines.Select(l => l.Message));
    }
}
