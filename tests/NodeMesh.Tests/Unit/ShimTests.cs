extern alias shim;
using System.Text;
using System.Text.Json;
using shim::NodeMesh.Shim;

namespace NodeMesh.Tests.Unit;

/// <summary>
/// The CNI plug-in as the runtime calls it (CNI_* variables, configuration on stdin), for what needs no agent: the
/// specification's error codes for bad input, hostile values refused before they are used, and the behaviour without
/// an agent (ADD fails closed, DEL succeeds, STATUS says not available). CniShimTests runs it for real.
/// </summary>
public class ShimTests
{
    private const string NoAgent = "/run/nodemesh-test-no-agent.sock";

    private static readonly string Previous = """{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.240.1.100/24","gateway":"10.240.1.1","interface":0}]}""";

    [Fact]
    public async Task Version_AnswersSupportedCniVersions()
    {
        (int rc, JsonElement result, _) = await RunAsync("VERSION", "{}", new Dictionary<string, string>());
        Assert.Equal(0, rc);
        Assert.Equal("1.1.0", result.GetProperty("cniVersion").GetString());
        Assert.Equal(["0.4.0", "1.0.0", "1.1.0"], result.GetProperty("supportedVersions").EnumerateArray().Select(e => e.GetString()));
    }

    [Theory]
    [InlineData("not json", 6)]
    [InlineData("[1,2]", 7)]
    [InlineData("""{"name":"k8s","type":"nodemesh-cni"}""", 7)]
    [InlineData("""{"cniVersion":"0.2.0","name":"k8s","type":"nodemesh-cni"}""", 1)]
    [InlineData("""{"cniVersion":"1.0.0","type":"nodemesh-cni"}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","type":"nodemesh-cni"}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","prevResult":"x"}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","agentSocket":"relative.sock","prevResult":{}}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","timeout":"forever","prevResult":{}}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","excludeNamespaces":["kube-system","-j ACCEPT"],"prevResult":{}}""", 7)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","prevResult":{"ips":[{"address":"10.240.1.100; rm -rf /"}]}}""", 6)]
    [InlineData("""{"cniVersion":"1.0.0","name":"k8s","prevResult":{"ips":"10.240.1.100/24"}}""", 6)]
    public async Task Add_WithABadConfiguration_GivesTheSpecificationsErrorCode(string stdin, int code)
    {
        (int rc, JsonElement result, string stderr) = await RunAsync("ADD", stdin, Environment("default", "web-1"));
        Assert.Equal(1, rc);
        Assert.Equal(code, result.GetProperty("code").GetInt32());
        Assert.StartsWith("nodemesh-cni:", result.GetProperty("msg").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("CNI_IFNAME", "eth0; reboot")]
    [InlineData("CNI_IFNAME", "eth 0")]
    [InlineData("CNI_IFNAME", "$(reboot)")]
    [InlineData("CNI_IFNAME", "averyveryverylongname")]
    [InlineData("CNI_IFNAME", "..")]
    [InlineData("CNI_CONTAINERID", "abc -j ACCEPT")]
    [InlineData("CNI_CONTAINERID", "")]
    [InlineData("CNI_NETNS", "relative/path")]
    [InlineData("CNI_NETNS", "")]
    [InlineData("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=$(reboot)")]
    [InlineData("CNI_ARGS", "K8S_POD_NAMESPACE=a b;K8S_POD_NAME=web-1")]
    [InlineData("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_UID=1; -j ACCEPT")]
    [InlineData("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;garbage")]
    [InlineData("CNI_ARGS", "IgnoreUnknown=1")]
    public async Task Add_WithAHostileOrMissingVariable_IsRefusedNamingIt_BeforeAnythingIsOpenedOrSent(string variable, string value)
    {
        Dictionary<string, string> env = Environment("default", "web-1");
        env[variable] = value;
        (int rc, JsonElement result, _) = await RunAsync("ADD", Config(), env);
        Assert.Equal(1, rc);
        Assert.Equal(4, result.GetProperty("code").GetInt32());
        string message = result.GetProperty("msg").GetString()!;
        Assert.Contains(variable, message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task VeryLongValues_AreRefused_AndTheMessageStaysShort()
    {
        Dictionary<string, string> env = Environment("default", new string('a', 300));
        (int rc, JsonElement result, _) = await RunAsync("ADD", Config(), env);
        Assert.Equal(4, result.GetProperty("code").GetInt32());
        Assert.True(result.GetProperty("msg").GetString()!.Length < 200, result.GetProperty("msg").GetString());

        env = Environment("default", "web-1");
        env["CNI_ARGS"] += ";X=" + new string('x', 20_000);
        (rc, result, _) = await RunAsync("ADD", Config(), env);
        Assert.Equal(1, rc);
        Assert.Equal(4, result.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Add_WithANetnsThatIsNotANamespace_OrIsMissing_IsRefused()
    {
        string file = Path.GetTempFileName();
        try
        {
            Dictionary<string, string> env = Environment("default", "web-1");
            env["CNI_NETNS"] = file;
            (int rc, JsonElement result, _) = await RunAsync("ADD", Config(), env);
            Assert.Equal(1, rc);
            Assert.Equal(4, result.GetProperty("code").GetInt32());
            Assert.Contains("not a namespace", result.GetProperty("msg").GetString(), StringComparison.Ordinal);

            env["CNI_NETNS"] = "/proc/self/ns/uts";
            (_, result, _) = await RunAsync("ADD", Config(), env);
            Assert.Equal(4, result.GetProperty("code").GetInt32());
            Assert.Contains("not a network namespace", result.GetProperty("msg").GetString(), StringComparison.Ordinal);

            env["CNI_NETNS"] = "/var/run/netns/nodemesh-test-no-such-namespace";
            (_, result, _) = await RunAsync("ADD", Config(), env);
            Assert.Equal(3, result.GetProperty("code").GetInt32());
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task WithoutAnAgent_AddFailsClosed_DelSucceeds_StatusIsNotAvailable_CheckFails()
    {
        (int rc, JsonElement result, _) = await RunAsync("ADD", Config(), Environment("default", "web-1"));
        Assert.Equal(1, rc);
        Assert.Equal(11, result.GetProperty("code").GetInt32());
        Assert.Contains(NoAgent, result.GetProperty("msg").GetString(), StringComparison.Ordinal);
        Assert.Contains("fail closed", result.GetProperty("details").GetString(), StringComparison.Ordinal);

        (rc, _, string stderr) = await RunAsync("DEL", Config(), Environment("default", "web-1"));
        Assert.Equal(0, rc);
        Assert.Contains("nothing to remove", stderr, StringComparison.Ordinal);

        Dictionary<string, string> gone = Environment("default", "web-1");
        gone.Remove("CNI_NETNS");
        (rc, _, _) = await RunAsync("DEL", Config(previous: false), gone);
        Assert.Equal(0, rc);

        (rc, result, _) = await RunAsync("STATUS", Config(previous: false), new Dictionary<string, string>());
        Assert.Equal(1, rc);
        Assert.Equal(50, result.GetProperty("code").GetInt32());

        (rc, result, _) = await RunAsync("CHECK", Config(), Environment("default", "web-1"));
        Assert.Equal(1, rc);
        Assert.Equal(11, result.GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task AnExcludedNamespace_IsPassedThroughWithoutTheAgent_InTheConfigurationsVersion()
    {
        string config = Config(exclude: "kube-system", version: "1.1.0");
        (int rc, JsonElement result, _) = await RunAsync("ADD", config, Environment("kube-system", "coredns-1"));
        Assert.Equal(0, rc);
        Assert.Equal("1.1.0", result.GetProperty("cniVersion").GetString());
        Assert.Equal("10.240.1.100/24", result.GetProperty("ips")[0].GetProperty("address").GetString());
        Assert.Equal("eth0", result.GetProperty("interfaces")[0].GetProperty("name").GetString());
    }

    [Theory]
    [InlineData("FOO")]
    [InlineData("")]
    public async Task AnUnknownOrMissingCommand_IsAnError(string command)
    {
        (int rc, JsonElement result, _) = await RunAsync(command, Config(), Environment("default", "web-1"));
        Assert.Equal(1, rc);
        Assert.Equal(4, result.GetProperty("code").GetInt32());
    }

    [Fact]
    public void CniArgs_AreParsedAsKeyValuePairs()
    {
        Dictionary<string, string> args = CniEnvironment.ParseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0b9e6f38-1c4e-4d1a-9f7e-2a7f3c1b5d10");
        Assert.Equal("default", args["K8S_POD_NAMESPACE"]);
        Assert.Equal("web-1", args["K8S_POD_NAME"]);
        Assert.Equal("0b9e6f38-1c4e-4d1a-9f7e-2a7f3c1b5d10", args["K8S_POD_UID"]);
    }

    private static string Config(string? exclude = null, string version = "1.0.0", bool previous = true) =>
        $$"""{"cniVersion":"{{version}}","name":"k8s-pod-network","type":"nodemesh-cni","agentSocket":"{{NoAgent}}","timeout":"2s"{{(exclude is null ? "" : $",\"excludeNamespaces\":[\"{exclude}\"]")}}{{(previous ? ",\"prevResult\":" + Previous : "")}}}""";

    private static Dictionary<string, string> Environment(string ns, string pod) => new()
    {
        ["CNI_CONTAINERID"] = "3f2a9c0d1e",
        ["CNI_NETNS"] = "/proc/self/ns/net",
        ["CNI_IFNAME"] = "eth0",
        ["CNI_PATH"] = "/usr/lib/cni",
        ["CNI_ARGS"] = $"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=3f2a9c0d1e",
    };

    private static async Task<(int Rc, JsonElement Result, string Stderr)> RunAsync(string command, string stdin, Dictionary<string, string> env)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var input = new MemoryStream(Encoding.UTF8.GetBytes(stdin));
        int rc = await CniPlugin.RunAsync(command, name => env.GetValueOrDefault(name), input, stdout, stderr);
        string output = stdout.ToString();
        using JsonDocument document = JsonDocument.Parse(output.Length == 0 ? "{}" : output);
        return (rc, document.RootElement.Clone(), stderr.ToString());
    }
}
