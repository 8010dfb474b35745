using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;

namespace NodeMesh.Gateway;

/// <summary>
/// HTTP/2 rapid reset (CVE-2023-44487): a client that cancels its requests as fast as it opens them makes the
/// gateway do the work of each and take none of the cost. Each connection has a budget of requests it may cancel
/// before their response begins (a token bucket: a burst, then so many a second); a connection that spends it
/// is closed. Kestrel's own guard only trips when requests pile up; this one trips on the pattern itself.
/// </summary>
internal sealed class ResetFloodGuard(int perSecond)
{
    private readonly ConcurrentDictionary<string, Budget> _connections = new(StringComparer.Ordinal);

    /// <summary>Connection middleware: tracks the connection while it lives.</summary>
    public Func<ConnectionDelegate, ConnectionDelegate> Middleware => next => async connection =>
    {
        var budget = new Budget(connection, perSecond);
        _connections[connection.ConnectionId] = budget;
        try
        {
            await next(connection);
        }
        finally
        {
            _connections.TryRemove(connection.ConnectionId, out _);
            budget.Dispose();
        }
    };

    /// <summary>After a request: one the client cancelled before its response began is charged; true when that closed the connection.</summary>
    public bool Charge(HttpContext context)
    {
        if (!context.RequestAborted.IsCancellationRequested || context.Response.HasStarted || !_connections.TryGetValue(context.Connection.Id, out Budget? budget))
        {
            return false;
        }

        return budget.Spend();
    }

    private sealed class Budget(ConnectionContext connection, int perSecond) : IDisposable
    {
        private readonly TokenBucketRateLimiter _tokens = new(new TokenBucketRateLimiterOptions
        {
            TokenLimit = perSecond * 2,
            TokensPerPeriod = perSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = false, // replenished as it is charged: no timer per connection
        });

        private int _closed;

        public bool Spend()
        {
            _tokens.TryReplenish();
            using RateLimitLease lease = _tokens.AttemptAcquire();
            if (lease.IsAcquired || Interlocked.Exchange(ref _closed, 1) != 0)
            {
                return false;
            }

            connection.Abort(new ConnectionAbortedException("the client cancelled requests faster than gateway.limits.maxClientResetsPerSecond allows (HTTP/2 rapid reset)"));
            return true;
        }

        public void Dispose() => _tokens.Dispose();
    }
}
