namespace NodeMesh.App;

/// <summary>The agent cannot start as configured; the message says what and why, for the operator.</summary>
internal sealed class StartupException(string message, Exception inner) : Exception(message, inner);
