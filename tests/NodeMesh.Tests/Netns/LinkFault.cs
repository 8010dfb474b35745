using System.Globalization;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// A network fault made with iptables in one namespace (this kernel has no netem): silently dropping TCP to and
/// from a port, as when a peer node vanishes. <see cref="RestoreAsync"/> (or disposal) takes the rules out again.
/// </summary>
internal sealed class LinkFault : IAsyncDisposable
{
    private readonly NetnsHost _host;
    private readonly string[][] _rules;
    private bool _restored;

    private LinkFault(NetnsHost host, string[][] rules)
    {
        _host = host;
        _rules = rules;
    }

    /// <summary>Drops every TCP packet to or from local port <paramref name="port"/> in <paramref name="host"/>.</summary>
    public static async Task<LinkFault> DropTcpPortAsync(NetnsHost host, int port)
    {
        string p = port.ToString(CultureInfo.InvariantCulture);
        var fault = new LinkFault(host, [["INPUT", "-p", "tcp", "--dport", p, "-j", "DROP"], ["OUTPUT", "-p", "tcp", "--sport", p, "-j", "DROP"]]);
        host.Topology.Track(fault);
        foreach (string[] rule in fault._rules)
        {
            CommandResult added = await host.RunAsync("iptables", ["-w", "-I", .. rule]);
            if (!added.Succeeded)
            {
                throw new InvalidOperationException($"cannot add fault rule in {host.Namespace}: {added}");
            }
        }

        return fault;
    }

    public async Task RestoreAsync()
    {
        if (_restored)
        {
            return;
        }

        _restored = true;
        foreach (string[] rule in _rules)
        {
            await _host.RunAsync("iptables", ["-w", "-D", .. rule]);
        }
    }

    public async ValueTask DisposeAsync() => await RestoreAsync();
}
