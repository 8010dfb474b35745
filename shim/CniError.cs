using System.Text;
using System.Text.Json;

namespace NodeMesh.Shim;

/// <summary>
/// A failure the plug-in reports to the runtime in the CNI specification's error form (on stdout, exit code 1):
/// <c>{"cniVersion", "code", "msg", "details"}</c>. Codes 1-99 are the specification's; 100 and up are this plug-in's.
/// </summary>
internal sealed class CniError(int code, string message, string details) : Exception(message)
{
    public const int IncompatibleVersion = 1;
    public const int UnsupportedField = 2;
    public const int ContainerUnknown = 3;
    public const int InvalidEnvironment = 4;
    public const int IoFailure = 5;
    public const int DecodeFailure = 6;
    public const int InvalidNetworkConfig = 7;
    public const int TryAgainLater = 11;
    public const int PluginNotAvailable = 50;

    /// <summary>The agent refused the pod (its reason is in the message).</summary>
    public const int AgentRefused = 100;

    public int Code { get; } = code;

    public string Details { get; } = details;

    public string ToJson(string cniVersion)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("cniVersion", cniVersion);
            json.WriteNumber("code", Code);
            json.WriteString("msg", Message);
            json.WriteString("details", Details);
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
