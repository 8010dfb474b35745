using System.Runtime.Versioning;

// The agent under test is Linux-only; so are its tests (namespaces, iptables).
[assembly: SupportedOSPlatform("linux")]
