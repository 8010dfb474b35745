namespace NodeMesh.Shim;

/// <summary>No answer from the agent: not running, not reachable, or it failed while answering.</summary>
internal sealed class AgentUnreachableException(string message, Exception? inner) : Exception(message, inner);
