using Microsoft.Extensions.Logging;

namespace NodeMesh.Telemetry;

/// <summary>The agent's log level, changeable while it runs (the admin API's <c>/logging?level=</c>).</summary>
internal sealed class LogLevelSwitch(LogLevel level)
{
    private int _level = (int)level;

    public LogLevel Level
    {
        get => (LogLevel)Volatile.Read(ref _level);
        set => Volatile.Write(ref _level, (int)value);
    }

    public bool Allows(LogLevel level) => level >= Level && level != LogLevel.None;
}
