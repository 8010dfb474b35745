using System.Runtime.Versioning;

// The agent is Linux-only: namespaces, iptables and socket options have no equivalent elsewhere.
[assembly: SupportedOSPlatform("linux")]
