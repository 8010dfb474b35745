namespace NodeMesh.Gateway;

/// <summary>
/// A rule's retry budget (Envoy's retry_budget): retries in flight at once may be at most
/// <c>budgetPercent</c> of the rule's requests in flight, and never fewer than <c>minRetryConcurrency</c>. A
/// backend that fails everything then sees at most that much extra load, instead of attempts times its traffic.
/// </summary>
internal sealed class RetryBudget(int percent, int minConcurrency)
{
    private int _requests;
    private int _retries;

    public void RequestStarted() => Interlocked.Increment(ref _requests);

    public void RequestFinished() => Interlocked.Decrement(ref _requests);

    /// <summary>Takes a place for one retry; false when the budget is spent (then no retry is made).</summary>
    public bool TryStartRetry()
    {
        int limit = Math.Max(minConcurrency, (int)((long)Volatile.Read(ref _requests) * percent / 100));
        if (Interlocked.Increment(ref _retries) <= limit)
        {
            return true;
        }

        Interlocked.Decrement(ref _retries);
        return false;
    }

    public void RetryFinished() => Interlocked.Decrement(ref _retries);
}
