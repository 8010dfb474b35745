using System.Buffers.Text;
using System.Text;
using NodeMesh.Identity;

namespace NodeMesh.Tests.Identity;

public sealed class JoinTokenTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _dir = TempDir.Create("nm-join");
    private readonly JoinTokens _tokens;

    public JoinTokenTests()
    {
        _tokens = JoinTokens.Open(_dir);
    }

    [Fact]
    public void Token_IsAccepted_ForItsNode_BeforeItExpires()
    {
        string token = _tokens.Create("node-a", TimeSpan.FromHours(1), Now);
        Assert.StartsWith(JoinTokens.Prefix, token, StringComparison.Ordinal);
        Assert.True(_tokens.TryVerify(token, "node-a", Now.AddMinutes(59), out JoinToken? verified, out string? reason), reason);
        Assert.Equal("node-a", verified.Node);
        Assert.Equal(Now.AddHours(1), verified.ExpiresAt);
        Assert.NotEqual(_tokens.Create("node-a", TimeSpan.FromHours(1), Now), token);
    }

    [Fact]
    public void ExpiredToken_IsRefused_AsExpired()
    {
        string token = _tokens.Create("node-a", TimeSpan.FromMinutes(5), Now);
        Assert.False(_tokens.TryVerify(token, "node-a", Now.AddMinutes(5), out _, out string? reason));
        Assert.Contains("expired", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TokenForAnotherNode_IsRefused_NamingBothNodes()
    {
        string token = _tokens.Create("node-a", TimeSpan.FromHours(1), Now);
        Assert.False(_tokens.TryVerify(token, "node-b", Now, out _, out string? reason));
        Assert.Contains("for another node", reason, StringComparison.Ordinal);
        Assert.Contains("'node-a'", reason, StringComparison.Ordinal);

        // No prefix or case games: the node name must be exactly the one the token names.
        Assert.False(_tokens.TryVerify(token, "node-a.evil", Now, out _, out _));
        Assert.False(_tokens.TryVerify(token, "node", Now, out _, out _));
    }

    [Fact]
    public void TamperedToken_IsRefused_EvenIfItsPayloadIsWellFormed()
    {
        string token = _tokens.Create("node-a", TimeSpan.FromMinutes(5), Now);
        string[] parts = token.Split('.');

        // Rewrite the payload to name another node and a later expiry, keeping the original MAC.
        string forged = Base64Url.EncodeToString(Encoding.UTF8.GetBytes($"join\nnode-b\n{Now.AddYears(1).ToUnixTimeSeconds()}\nxyz"));
        Assert.False(_tokens.TryVerify($"{parts[0]}.{forged}.{parts[2]}", "node-b", Now, out _, out string? reason));
        Assert.Contains("not valid", reason, StringComparison.Ordinal);

        // Change one character of the MAC.
        char first = parts[2][0] == 'A' ? 'B' : 'A';
        Assert.False(_tokens.TryVerify($"{parts[0]}.{parts[1]}.{first}{parts[2][1..]}", "node-a", Now, out _, out reason));
        Assert.Contains("not valid", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void TokenFromAnotherCa_IsRefused()
    {
        string otherDir = TempDir.Create("nm-join-other");
        try
        {
            string token = JoinTokens.Open(otherDir).Create("node-a", TimeSpan.FromHours(1), Now);
            Assert.False(_tokens.TryVerify(token, "node-a", Now, out _, out string? reason));
            Assert.Contains("another CA", reason, StringComparison.Ordinal);
        }
        finally
        {
            TempDir.Delete(otherDir);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("garbage")]
    [InlineData("nmjoin1.")]
    [InlineData("nmjoin1..")]
    [InlineData("nmjoin1.abc")]
    [InlineData("nmjoin1.abc.!!!")]
    [InlineData("nmjoin1.abc.AAAA")]
    [InlineData("nmjoin2.abc.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]
    public void MalformedToken_IsRefused_AsMalformed(string token)
    {
        Assert.False(_tokens.TryVerify(token, "node-a", Now, out _, out string? reason));
        Assert.Equal("join token is malformed", reason);
    }

    [Fact]
    public void OverlongToken_IsRefused_WithoutBeingParsed()
    {
        string token = JoinTokens.Prefix + new string('A', 100_000) + ".AAAA";
        Assert.False(_tokens.TryVerify(token, "node-a", Now, out _, out string? reason));
        Assert.Equal("join token is malformed", reason);
    }

    [Fact]
    public void Create_RefusesBadNodeNamesAndTtls()
    {
        Assert.Throws<ArgumentException>(() => _tokens.Create("Node A", TimeSpan.FromHours(1), Now));
        Assert.Throws<ArgumentException>(() => _tokens.Create("a\nb", TimeSpan.FromHours(1), Now));
        Assert.Throws<ArgumentOutOfRangeException>(() => _tokens.Create("node-a", TimeSpan.Zero, Now));
        Assert.Throws<ArgumentOutOfRangeException>(() => _tokens.Create("node-a", TimeSpan.FromDays(400), Now));
    }

    [Fact]
    public void Secret_IsPrivate_AndStableAcrossOpens()
    {
        string path = Path.Combine(_dir, JoinTokens.SecretFile);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        string token = _tokens.Create("node-a", TimeSpan.FromHours(1), Now);
        Assert.True(JoinTokens.Open(_dir).TryVerify(token, "node-a", Now, out _, out string? reason), reason);
    }

    [Fact]
    public void Token_IsRedeemedOnce_AndStaysRedeemedWhenTheCaReopensItsDirectory()
    {
        string token = _tokens.Create("node-a", TimeSpan.FromHours(1), Now);
        Assert.True(_tokens.TryRedeem(token, "node-a", Now, out JoinToken? redeemed, out string? reason), reason);

        Assert.False(_tokens.TryRedeem(token, "node-a", Now.AddSeconds(1), out _, out reason));
        Assert.Contains($"join token {redeemed.Id} was already used", reason, StringComparison.Ordinal);
        Assert.Contains("nodemesh ca token create", reason, StringComparison.Ordinal);

        // A restarted CA reads what was redeemed; a new token for the same node still joins.
        JoinTokens reopened = JoinTokens.Open(_dir);
        Assert.False(reopened.TryRedeem(token, "node-a", Now.AddSeconds(2), out _, out reason));
        Assert.Contains("already used", reason, StringComparison.Ordinal);
        Assert.True(reopened.TryRedeem(_tokens.Create("node-a", TimeSpan.FromHours(1), Now), "node-a", Now, out _, out reason), reason);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(_dir, JoinTokens.RedeemedFile)));
    }

    [Fact]
    public void RedeemedRecord_ForgetsExpiredTokens_AndACorruptRecordRefusesEveryJoin()
    {
        string shortLived = _tokens.Create("node-a", TimeSpan.FromMinutes(5), Now);
        Assert.True(_tokens.TryRedeem(shortLived, "node-a", Now, out JoinToken? first, out string? reason), reason);
        Assert.True(_tokens.TryRedeem(_tokens.Create("node-b", TimeSpan.FromHours(1), Now), "node-b", Now.AddMinutes(10), out _, out reason), reason);
        string record = File.ReadAllText(Path.Combine(_dir, JoinTokens.RedeemedFile));
        Assert.DoesNotContain(first.Id, record, StringComparison.Ordinal);
        Assert.Single(record.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        File.WriteAllText(Path.Combine(_dir, JoinTokens.RedeemedFile), "not a record\n");
        Assert.False(_tokens.TryRedeem(_tokens.Create("node-c", TimeSpan.FromHours(1), Now), "node-c", Now, out _, out reason));
        Assert.Contains(JoinTokens.RedeemedFile, reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("30m", 1800)]
    [InlineData("1h", 3600)]
    [InlineData("7d", 604800)]
    public void Ttl_IsReadFromTheCommandLineForm(string text, int seconds)
    {
        Assert.True(JoinTokens.TryParseTtl(text, out TimeSpan ttl, out string? error), error);
        Assert.Equal(TimeSpan.FromSeconds(seconds), ttl);
    }

    [Theory]
    [InlineData("")]
    [InlineData("h")]
    [InlineData("1")]
    [InlineData("0h")]
    [InlineData("-1h")]
    [InlineData("1.5h")]
    [InlineData("1 h")]
    [InlineData("1w")]
    [InlineData("400d")]
    [InlineData("99999999999999d")]
    public void Ttl_RefusesEverythingElse(string text)
    {
        Assert.False(JoinTokens.TryParseTtl(text, out _, out string? error));
        Assert.NotEmpty(error);
    }

    public void Dispose() => TempDir.Delete(_dir);
}
