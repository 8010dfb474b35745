namespace NodeMesh.Tunnel;

/// <summary>
/// Bytes this side may still send under one window the peer grants (a stream's credit, or the connection's).
/// Senders take what is there or wait; the peer's WINDOW frames, and writers that give back what they took and
/// never sent, add to it; once failed, every waiter and later taker gets the failure.
/// </summary>
internal sealed class SendCredit(long initial)
{
    private readonly Lock _gate = new();
    private long _available = initial;
    private TaskCompletionSource? _waiter;
    private Exception? _failure;

    /// <summary>Takes up to <paramref name="wanted"/> bytes, waiting while none are left.</summary>
    /// <exception cref="IOException">The window has failed (the stream or the connection ended).</exception>
    public async ValueTask<int> TakeAsync(int wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_failure is not null)
                {
                    throw new IOException(_failure.Message, _failure);
                }

                if (_available > 0)
                {
                    int granted = (int)Math.Min(wanted, _available);
                    _available -= granted;
                    return granted;
                }

                _waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _waiter.Task;
            }

            await wait.WaitAsync(cancellationToken);
        }
    }

    /// <summary>The peer grants <paramref name="increment"/> more; growing past 2^31-1 is its protocol error.</summary>
    /// <param name="what">What the window belongs to, for the error ("stream 7 credit", "connection window").</param>
    public void Grant(uint increment, string what)
    {
        lock (_gate)
        {
            if (_available + increment > int.MaxValue)
            {
                throw new TunnelProtocolException(TunnelError.FlowControl, $"{what} grown past 2^31-1 by {increment}");
            }
        }

        Return((int)increment);
    }

    /// <summary>Gives back bytes taken and never sent.</summary>
    public void Return(int count)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _available += count;
            waiter = _waiter;
            _waiter = null;
        }

        waiter?.TrySetResult();
    }

    public void Fail(Exception reason)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _failure ??= reason;
            waiter = _waiter;
            _waiter = null;
        }

        waiter?.TrySetException(new IOException(reason.Message, reason));
    }
}
