namespace NodeMesh.Sockets;

/// <summary>
/// Lets one log line through per interval and counts the ones held back, so an event that a peer can make
/// happen thousands of times a second (a shed connection, a failed accept) is counted in full but logged rarely.
/// </summary>
internal sealed class LogThrottle(TimeSpan interval)
{
    private readonly Lock _gate = new();
    private long _lastLogged = long.MinValue;
    private int _held;

    /// <summary>Whether to log now; if so, <paramref name="held"/> is how many were held back since the last line.</summary>
    public bool ShouldLog(out int held)
    {
        lock (_gate)
        {
            long now = Environment.TickCount64;
            if (_lastLogged != long.MinValue && now - _lastLogged < (long)interval.TotalMilliseconds)
            {
                _held++;
                held = 0;
                return false;
            }

            _lastLogged = now;
            held = _held;
            _held = 0;
            return true;
        }
    }
}
