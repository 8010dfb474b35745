using System.Text;
using System.Text.Json;
using NodeMesh.Shim;

namespace NodeMesh.Tests.Unit;

public class ShimTests
{
    [Fact]
    public async Task Version_AnswersSupportedCniVersions()
    {
        using var stdout = new StringWriter();
        int rc = await CniPlugin.RunAsync("VERSION", Stream.Null, stdout, TextWriter.Null);
        Assert.Equal(0, rc);
        using JsonDocument doc = JsonDocument.Parse(stdout.ToString());
        Assert.Contains("1.0.0", doc.RootElement.GetProperty("supportedVersions").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task Add_IsRefusedWithACniError_NotSilentlyAccepted()
    {
        using var stdout = new StringWriter();
        using var stdin = new MemoryStream(Encoding.UTF8.GetBytes("""{"cniVersion":"1.0.0","name":"x","type":"nodemesh-cni"}"""));
        int rc = await CniPlugin.RunAsync("ADD", stdin, stdout, TextWriter.Null);
        Assert.Equal(1, rc);
        using JsonDocument doc = JsonDocument.Parse(stdout.ToString());
        Assert.Equal(4, doc.RootElement.GetProperty("code").GetInt32());
    }
}
