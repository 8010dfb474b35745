using System.Runtime.Versioning;

// The agent runs on Linux only (network namespaces, /proc); so does its microbenchmark.
[assembly: SupportedOSPlatform("linux")]
