using NodeMesh.App;

namespace NodeMesh.Tests.Unit;

public class OptionsTests
{
    [Fact]
    public void Parse_ReadsValuesFlagsAndRepeats()
    {
        Options options = Options.Parse(["--name", "web", "--label=app=web", "--label", "tier=front", "--json"], ["name", "label"], ["json"]);
        Assert.Equal("web", options.Get("name"));
        Assert.Equal(["app=web", "tier=front"], options.GetAll("label"));
        Assert.True(options.Flag("json"));
        Assert.Null(options.Get("socket"));
    }

    [Theory]
    [InlineData(new[] { "--nmae", "x" }, "unknown option '--nmae'")]
    [InlineData(new[] { "web" }, "unexpected argument 'web'")]
    [InlineData(new[] { "--name" }, "--name needs a value")]
    public void Parse_RefusesBadArguments_Clearly(string[] args, string expected)
    {
        UsageException ex = Assert.Throws<UsageException>(() => Options.Parse(args, ["name"], []));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RequiredAndIntegers_NameTheOption()
    {
        Options options = Options.Parse(["--days", "ten"], ["days", "dir"], []);
        Assert.Contains("--dir is required", Assert.Throws<UsageException>(() => options.Required("dir")).Message, StringComparison.Ordinal);
        Assert.Contains("--days", Assert.Throws<UsageException>(() => options.GetInt("days")).Message, StringComparison.Ordinal);
    }
}
