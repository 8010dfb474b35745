namespace NodeMesh.Tunnel;

/// <summary>A peer broke the tunnel protocol or a limit: the connection goes away with <see cref="Code"/>.</summary>
internal sealed class TunnelProtocolException(TunnelError code, string message) : IOException(message)
{
    public TunnelError Code { get; } = code;
}
