using NodeMesh.Config;

namespace NodeMesh.Tests.Fuzz;

/// <summary>Cases the configuration fuzz properties found, kept as plain tests.</summary>
public sealed class ConfigRegressionTests
{
    private const string Valid = """
        { "node": { "name": "node1", "address": "10.231.0.1" }, "ca": { "certificateTtl": "TTL" } }
        """;

    [Theory]
    [InlineData("99999999999d")]
    [InlineData("99999999999h")]
    [InlineData("99999999999m")]
    [InlineData("9999999999d")]
    public void Parse_DurationTooLongForATimeSpan_IsAFieldError_NotAnOverflow(string ttl)
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(Valid.Replace("TTL", ttl, StringComparison.Ordinal), "f"));
        Assert.Contains(ex.Errors, e => e.StartsWith($"ca.certificateTtl: '{ttl}' is longer than", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("\"30d\"")]
    [InlineData("[]")]
    [InlineData("")]
    [InlineData("   ")]
    public void Parse_DocumentThatIsNotAnObject_IsOneErrorWithoutAnEmptyFieldPath(string json)
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        string error = Assert.Single(ex.Errors);
        Assert.False(error.StartsWith(':'), error);
        Assert.DoesNotContain("NodeMesh.", error, StringComparison.Ordinal);
        Assert.Contains("(line 1, column", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "ports": { "outbound": "fast" } }""", "ports.outbound: expected a number (line 1")]
    [InlineData("""{ "ports": [] }""", "ports: expected an object (line 1")]
    [InlineData("""{ "workloads": {} }""", "workloads: expected a list (line 1")]
    [InlineData("""{ "workloads": [ { "labels": [] } ] }""", "workloads[0].labels: expected an object (line 1")]
    [InlineData("""{ "trustDomain": 1 }""", "trustDomain: expected a string (line 1")]
    [InlineData("""{ "policies": [ { "dryRun": "yes" } ] }""", "policies[0].dryRun: expected true or false (line 1")]
    public void Parse_WrongType_SaysWhatWasExpected_NotTheInternalTypeName(string json, string expected)
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        Assert.StartsWith(expected, Assert.Single(ex.Errors), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{ "ca": { "ro'le": "server" } }""", "unknown field 'ro'le'")]
    [InlineData("""{ "ca": { "it's' could not be mapped": 1 } }""", "unknown field 'it's' could not be mapped'")]
    [InlineData("""{ "ca": { "a\u0007b": 1 } }""", "unknown field 'a?b'")]
    public void Parse_UnknownFieldWithQuotesOrControlCharacters_IsNamedPrintably_WithoutTheInternalTypeName(string json, string expected)
    {
        ConfigException ex = Assert.Throws<ConfigException>(() => ConfigLoader.Parse(json, "f"));
        string error = Assert.Single(ex.Errors);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.DoesNotContain("NodeMesh.", error, StringComparison.Ordinal);
    }
}
