using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// tcpdump on one interface of one namespace (by default a node's link0, the wire between nodes), writing a
/// pcap file packet by packet (-U). Stop it to read what crossed the wire as <see cref="CapturedTraffic"/>.
/// </summary>
internal sealed class LinkCapture : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();
    private readonly Lock _gate = new();

    private LinkCapture(NetnsHost host, string device, string file, Process process)
    {
        Host = host;
        Device = device;
        File = file;
        _process = process;
    }

    public NetnsHost Host { get; }

    public string Device { get; }

    public string File { get; }

    public string Stderr
    {
        get
        {
            lock (_gate)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts tcpdump and waits until it reports that it is listening (so nothing sent after is missed).</summary>
    public static async Task<LinkCapture> StartAsync(NetnsHost host, string device, string file)
    {
        var start = new ProcessStartInfo("ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        // --immediate-mode: hand each packet to tcpdump at once (otherwise packets still in the kernel's ring
        // buffer when tcpdump is stopped are counted "received by filter" but never written).
        // -Z root: keep the privileges needed to write into the test's root-owned directory.
        foreach (string arg in new[] { "netns", "exec", host.Namespace, "tcpdump", "-i", device, "-w", file, "-U", "--immediate-mode", "-n", "-s", "0", "-Z", "root" })
        {
            start.ArgumentList.Add(arg);
        }

        var listening = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = start };
        var capture = new LinkCapture(host, device, file, process);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (capture._gate)
            {
                capture._stderr.Append(e.Data).Append('\n');
            }

            if (e.Data.Contains("listening on", StringComparison.Ordinal))
            {
                listening.TrySetResult();
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.Start();
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            await listening.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            await capture.DisposeAsync();
            throw new InvalidOperationException($"tcpdump on {device} in {host.Namespace} did not start: {capture.Stderr}");
        }

        return capture;
    }

    /// <summary>Stops tcpdump (SIGINT, so it flushes) and reads the capture.</summary>
    public async Task<CapturedTraffic> StopAsync()
    {
        if (!_process.HasExited)
        {
            // Give packets still in flight on the veth a moment to be written.
            await Task.Delay(300);
            await Command.RunAsync(TimeSpan.FromSeconds(5), "kill", "-INT", _process.Id.ToString(CultureInfo.InvariantCulture));
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await _process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill();
                await _process.WaitForExitAsync();
            }
        }

        return CapturedTraffic.Read(File, $"{Device} of {Host.Namespace} ({File}; tcpdump: {Stderr.Trim().Replace('\n', ' ')})");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }
}
