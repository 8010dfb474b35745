using System.Security.Cryptography;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>Payloads and markers the tests send.</summary>
internal static class TestData
{
    /// <summary>Random bytes (not compressible, so a capture cannot find them by accident).</summary>
    public static byte[] RandomBytes(int length)
    {
        byte[] data = new byte[length];
        RandomNumberGenerator.Fill(data);
        return data;
    }

    /// <summary>A string that appears nowhere unless the test sends it: "NMMARK-" and 24 random hex digits.</summary>
    public static string Marker(string label = "") =>
        $"NMMARK-{label}{(label.Length > 0 ? "-" : "")}{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12))}";

    public static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);
}
