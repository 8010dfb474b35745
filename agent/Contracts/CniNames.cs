namespace NodeMesh.Contracts;

/// <summary>What the CNI specification allows in a container id and an interface name (shim and agent check alike).</summary>
public static class CniNames
{
    /// <summary>1-255 of letters, digits, '_', '.', '-', starting with a letter or digit.</summary>
    public static bool IsContainerId(string? value) =>
        value is { Length: > 0 and <= 255 } && char.IsAsciiLetterOrDigit(value[0]) && value.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '_' or '.' or '-');

    /// <summary>
    /// A Linux interface name: 1-15 characters, not "." or "..", no '/', ':' or whitespace (the specification), and
    /// none of the characters a shell or iptables would read as syntax, which no real interface name needs.
    /// </summary>
    public static bool IsInterfaceName(string? value) =>
        value is { Length: > 0 and <= 15 } && value is not ("." or "..")
        && value.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '_' or '.' or '-' or '@' or '+');
}
