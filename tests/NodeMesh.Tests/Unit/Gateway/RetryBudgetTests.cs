using NodeMesh.Gateway;

namespace NodeMesh.Tests.Unit.Gateway;

public class RetryBudgetTests
{
    [Fact]
    public void RetriesInFlight_AreAtMostTheShareOfRequests_AndNeverFewerThanTheMinimum()
    {
        var budget = new RetryBudget(percent: 20, minConcurrency: 3);
        for (int i = 0; i < 50; i++)
        {
            budget.RequestStarted();
        }

        // 20 % of 50 is 10.
        Assert.Equal(10, Enumerable.Range(0, 20).Count(_ => budget.TryStartRetry()));
        budget.RetryFinished();
        Assert.True(budget.TryStartRetry());
        Assert.False(budget.TryStartRetry());

        // Few requests: the minimum still allows three at once.
        var quiet = new RetryBudget(percent: 20, minConcurrency: 3);
        quiet.RequestStarted();
        Assert.Equal(3, Enumerable.Range(0, 5).Count(_ => quiet.TryStartRetry()));
    }

    [Fact]
    public void TheForwardingReason_NamesTheCauses()
    {
        var ex = new HttpRequestException("The SSL connection could not be established, see inner exception.",
            new System.Security.Authentication.AuthenticationException("The remote certificate is invalid according to the validation procedure: RemoteCertificateNameMismatch"));
        Assert.Equal("The SSL connection could not be established: The remote certificate is invalid according to the validation procedure: RemoteCertificateNameMismatch",
            GatewayRequestHandler.Reason(ex));
        Assert.Equal("", GatewayRequestHandler.Reason(null));
    }
}
