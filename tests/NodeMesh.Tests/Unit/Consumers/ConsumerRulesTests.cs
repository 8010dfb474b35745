using NodeMesh.Consumers;
using NodeMesh.Contracts;

namespace NodeMesh.Tests.Unit.Consumers;

/// <summary>Keys, the consumer changes and the directory's lookups, decided without a store or a socket.</summary>
public sealed class ConsumerRulesTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    private static ConsumerRecord Created(string name = "shop-app", string plan = "") =>
        ConsumerRules.Create(null, new ConsumerChange { Name = name, Plan = plan }, Now);

    [Fact]
    public void AnIssuedKey_IsFoundByItsId_AndOnlyItsHashIsStored()
    {
        (string key, StoredApiKey stored) = ApiKeys.Issue(Now, null);
        Assert.Matches("^nmk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$", key);
        Assert.True(ApiKeys.TryParseId(key, out string? id));
        Assert.Equal(stored.Id, id);
        Assert.DoesNotContain(key[21..], stored.Sha256, StringComparison.Ordinal);
        Assert.True(ApiKeys.Matches(stored, key));
        Assert.False(ApiKeys.Matches(stored, key[..^1] + (key[^1] == 'A' ? 'B' : 'A')));
        Assert.NotEqual(key, ApiKeys.Issue(Now, null).Key);
    }

    [Theory]
    [InlineData("")]
    [InlineData("nmk_")]
    [InlineData("Bearer abc")]
    [InlineData("nmk_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("nmk_0123456789abcdef-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    [InlineData("nmk_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void WhatIsNotAKey_HasNoId(string text) => Assert.False(ApiKeys.TryParseId(text, out _));

    [Fact]
    public void TheDirectory_NamesTheConsumerOfAValidKey_AndSaysWhyNotForTheOthers()
    {
        ConsumerRecord consumer = ConsumerRules.IssueKey(Created(), "shop-app", TimeSpan.FromDays(1), Now, out string key);
        ConsumerRecord other = ConsumerRules.IssueKey(Created("other"), "other", null, Now, out string otherKey);
        var directory = new ConsumerDirectory([consumer, other]);

        Assert.Equal(new ConsumerMatch(ConsumerMatchKind.Found, consumer), directory.ByApiKey(key, Now));
        Assert.Equal("other", directory.ByApiKey(otherKey, Now).Consumer!.Name);
        Assert.Equal(ConsumerMatchKind.KeyInvalid, directory.ByApiKey(key, Now + TimeSpan.FromDays(1)).Kind);
        Assert.Equal(ConsumerMatchKind.Unknown, directory.ByApiKey(ApiKeys.Issue(Now, null).Key, Now).Kind);

        // A key of the right id with another secret is no one's.
        string forged = key[..21] + new string('A', 43);
        Assert.Equal(ConsumerMatchKind.Unknown, directory.ByApiKey(forged, Now).Kind);

        var disabled = new ConsumerDirectory([ConsumerRules.SetState(consumer, "shop-app", ConsumerStates.Disabled)]);
        Assert.Equal(ConsumerMatchKind.NotActive, disabled.ByApiKey(key, Now).Kind);
    }

    [Fact]
    public void Rotation_IssuesANewKey_AndTheOldOneEndsAfterItsGrace()
    {
        ConsumerRecord consumer = ConsumerRules.IssueKey(Created(), "shop-app", null, Now, out string old);
        string oldId = consumer.Keys[0].Id;
        ConsumerRecord rotated = ConsumerRules.RotateKey(consumer, "shop-app", oldId, null, TimeSpan.FromHours(1), Now, out string fresh);
        var directory = new ConsumerDirectory([rotated]);

        Assert.Equal(2, rotated.Keys.Count);
        Assert.Equal(ConsumerMatchKind.Found, directory.ByApiKey(old, Now + TimeSpan.FromMinutes(59)).Kind);
        Assert.Equal(ConsumerMatchKind.KeyInvalid, directory.ByApiKey(old, Now + TimeSpan.FromHours(1)).Kind);
        Assert.Equal(ConsumerMatchKind.Found, directory.ByApiKey(fresh, Now + TimeSpan.FromDays(365)).Kind);

        // Without a grace the old key ends at once, revoked.
        ConsumerRecord now = ConsumerRules.RotateKey(consumer, "shop-app", oldId, null, TimeSpan.Zero, Now, out _);
        Assert.Equal(Now, now.Keys.Single(k => k.Id == oldId).RevokedAt);
        Assert.Equal(ConsumerMatchKind.KeyInvalid, new ConsumerDirectory([now]).ByApiKey(old, Now).Kind);

        // A revoked key cannot be rotated: that would hand out a key in place of one already taken away.
        ConsumerRecord revoked = ConsumerRules.RevokeKey(consumer, "shop-app", oldId, Now);
        var refused = Assert.Throws<ConsumerChangeException>(() => ConsumerRules.RotateKey(revoked, "shop-app", oldId, null, TimeSpan.Zero, Now, out _));
        Assert.Equal(ConsumerRefusal.Conflict, refused.Refusal);
    }

    [Fact]
    public void Changes_AreRefused_WithWhatIsWrong()
    {
        ConsumerRecord consumer = Created();
        Assert.Equal(ConsumerRefusal.Conflict, Assert.Throws<ConsumerChangeException>(() => ConsumerRules.Create(consumer, new ConsumerChange { Name = "shop-app" }, Now)).Refusal);
        Assert.Equal(ConsumerRefusal.NotFound, Assert.Throws<ConsumerChangeException>(() => ConsumerRules.IssueKey(null, "ghost", null, Now, out _)).Refusal);
        Assert.Equal(ConsumerRefusal.NotFound, Assert.Throws<ConsumerChangeException>(() => ConsumerRules.RevokeKey(consumer, "shop-app", "0123456789abcdef", Now)).Refusal);
        Assert.Contains("uri:SAN", Assert.Throws<ConsumerChangeException>(() => ConsumerRules.Update(consumer, new ConsumerChange { Name = "shop-app", Certificates = ["CN=app"] })).Message,
            StringComparison.Ordinal);
        Assert.Contains("64 hex digits", Assert.Throws<ConsumerChangeException>(() => ConsumerRules.Update(consumer, new ConsumerChange { Name = "shop-app", Certificates = ["sha256:abcd"] })).Message,
            StringComparison.Ordinal);
        Assert.Contains("active or pending", Assert.Throws<ConsumerChangeException>(() => ConsumerRules.Create(null, new ConsumerChange { Name = "x", State = "disabled" }, Now)).Message,
            StringComparison.Ordinal);
        Assert.NotNull(ConsumerRules.NameError("Shop_App"));
        Assert.Null(ConsumerRules.NameError("shop-app"));

        ConsumerRecord full = consumer;
        for (int i = 0; i < ConsumerRules.MaxKeys; i++)
        {
            full = ConsumerRules.IssueKey(full, "shop-app", null, Now, out _);
        }

        Assert.Contains("revoke one first", Assert.Throws<ConsumerChangeException>(() => ConsumerRules.IssueKey(full, "shop-app", null, Now, out _)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AStoredRecord_IsCheckedWhole()
    {
        Assert.Null(ConsumerRules.RecordError(ConsumerRules.IssueKey(Created(), "shop-app", null, Now, out _)));
        Assert.NotNull(ConsumerRules.RecordError(Created() with { State = "gone" }));
        Assert.NotNull(ConsumerRules.RecordError(Created() with { Keys = [new StoredApiKey { Id = "short", Sha256 = new string('0', 64) }] }));
        Assert.NotNull(ConsumerRules.RecordError(Created() with { Name = "" }));
        Assert.NotNull(ConsumerRules.RecordError(null));
    }
}
