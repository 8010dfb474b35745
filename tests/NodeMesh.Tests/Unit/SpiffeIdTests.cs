using NodeMesh.Identity;

namespace NodeMesh.Tests.Unit;

public class SpiffeIdTests
{
    [Fact]
    public void Parse_ReadsTrustDomainNamespaceAndServiceAccount()
    {
        SpiffeId id = SpiffeId.Parse("spiffe://cluster.local/ns/demo/sa/cert-manager.io");
        Assert.Equal("cluster.local", id.TrustDomain);
        Assert.Equal("demo", id.Namespace);
        Assert.Equal("cert-manager.io", id.ServiceAccount);
        Assert.Equal("spiffe://cluster.local/ns/demo/sa/cert-manager.io", id.Uri);
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("http://cluster.local/ns/a/sa/b", "must start with 'spiffe://'")]
    [InlineData("spiffe://cluster.local/ns/a", "must have the form")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b/extra", "must have the form")]
    [InlineData("spiffe://cluster.local/sa/a/ns/b", "must have the form")]
    [InlineData("spiffe://Cluster.Local/ns/a/sa/b", "trust domain")]
    [InlineData("spiffe:///ns/a/sa/b", "trust domain")]
    [InlineData("spiffe://cluster.local/ns/A/sa/b", "namespace")]
    [InlineData("spiffe://cluster.local/ns/a.b/sa/b", "namespace")]
    [InlineData("spiffe://cluster.local/ns/-a/sa/b", "namespace")]
    [InlineData("spiffe://cluster.local/ns/a/sa/B", "service account")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b;rm -rf", "service account")]
    [InlineData("spiffe://cluster.local/ns/a/sa/b.", "service account")]
    [InlineData("spiffe://cluster.local/ns/a/sa/$(id)", "service account")]
    public void TryParse_RefusesMalformedIds_WithAReason(string value, string expected)
    {
        Assert.False(SpiffeId.TryParse(value, out SpiffeId? id, out string? error));
        Assert.Null(id);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Equality_IsExact_NoPrefixSuffixOrCaseMatching()
    {
        SpiffeId a = SpiffeId.Parse("spiffe://td/ns/a/sa/cert-manager.io");
        Assert.NotEqual(a, SpiffeId.Parse("spiffe://td/ns/a/sa/cert-manager-io"));
        Assert.NotEqual(SpiffeId.Parse("spiffe://td/ns/a/sa/x"), SpiffeId.Parse("spiffe://td/ns/ab/sa/x"));
        Assert.Equal(a, SpiffeId.Parse("spiffe://td/ns/a/sa/cert-manager.io"));
    }

    [Fact]
    public void TryParse_RefusesOverlongInput()
    {
        Assert.False(SpiffeId.TryParse("spiffe://td/ns/a/sa/" + new string('a', 3000), out _, out string? error));
        Assert.Contains("longer than", error, StringComparison.Ordinal);
    }
}
