using System.Text;
using System.Text.Json;

namespace NodeMesh.Shim;

/// <summary>
/// The CNI plug-in the container runtime calls for every pod. This first version answers VERSION as the CNI
/// specification requires and refuses ADD/DEL/CHECK with a proper CNI error: registering pods with the
/// agent's local API is the next step (see README, "Kubernetes").
/// </summary>
internal static class CniPlugin
{
    internal const string SupportedVersions = """{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}""";

    public static async Task<int> RunAsync(string? command, Stream stdin, TextWriter stdout, TextWriter stderr)
    {
        switch (command)
        {
            case "VERSION":
                await stdout.WriteLineAsync(SupportedVersions);
                return 0;
            case "ADD" or "DEL" or "CHECK":
                // Read (and bound) the network configuration so a runtime never blocks writing to us.
                byte[] buffer = new byte[64 * 1024];
                _ = await stdin.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false);
                await stdout.WriteLineAsync(Error(4, $"nodemesh-cni: {command} is not implemented yet", "pod registration through the shim arrives in a later release"));
                return 1;
            default:
                await stderr.WriteLineAsync("nodemesh-cni: this is a CNI plug-in; the container runtime runs it with CNI_COMMAND set (VERSION, ADD, DEL, CHECK).");
                return 1;
        }
    }

    /// <summary>A CNI error result (code 4: invalid necessary environment variables / not supported).</summary>
    internal static string Error(int code, string message, string details)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("cniVersion", "1.0.0");
            json.WriteNumber("code", code);
            json.WriteString("msg", message);
            json.WriteString("details", details);
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
