namespace NodeMesh.Tunnel;

/// <summary>The one byte the receiving agent answers a flow header with, before any payload.</summary>
internal enum FlowStatus : byte
{
    Connected = 0,
    MalformedHeader = 1,
    NotLocalWorkload = 2,
    ConnectRefused = 3,
    ConnectFailed = 4,
    Denied = 5,
}
