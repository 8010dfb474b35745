namespace NodeMesh.Config;

/// <summary>A configuration that cannot be used; lists every problem with the path of its field.</summary>
internal sealed class ConfigException : Exception
{
    public ConfigException(string source, IReadOnlyList<string> errors)
        : base($"invalid configuration in {source}:{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", errors))
    {
        Errors = errors;
    }

    public IReadOnlyList<string> Errors { get; }
}
