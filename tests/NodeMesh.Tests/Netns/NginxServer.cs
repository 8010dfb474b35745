using System.Diagnostics;
using System.Net.Sockets;

namespace NodeMesh.Tests.Netns;

/// <summary>
/// A real nginx (Debian's nginx-light), one process in a host's namespace, for the gateway's backends: it answers
/// each request with a line naming itself and what it was sent, so a test sees which backend took a request and
/// what the gateway changed on the way. Stopped (killed) with the topology.
/// </summary>
internal sealed class NginxServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    private NginxServer(Process process, string dir)
    {
        _process = process;
        _dir = dir;
    }

    /// <summary>
    /// The line every answer holds: <c>served-by=NAME host=… uri=… method=… xff=… xfp=… env=… debug=…</c>, with
    /// the response header <c>X-Served-By: NAME</c>.
    /// </summary>
    public static string EchoLocation(string name) =>
        $"default_type text/plain; add_header X-Served-By {name} always; add_header X-Internal secret always; "
        + $"return 200 \"served-by={name} host=$host uri=$request_uri method=$request_method xff=$http_x_forwarded_for xfp=$http_x_forwarded_proto env=$http_x_env debug=$http_x_debug tp=$http_traceparent xfcc=$http_x_forwarded_client_cert\\n\";";

    /// <summary>nginx in <paramref name="host"/> on <paramref name="port"/> whose <c>location /</c> is <paramref name="location"/> (default: <see cref="EchoLocation"/>).</summary>
    /// <param name="keepalive">False: nginx closes every connection after its response (each request is one flow).</param>
    /// <param name="serverDirectives">More directives in the server block (e.g. ssl_certificate).</param>
    public static async Task<NginxServer> StartAsync(NetnsHost host, string name, int port, string? location = null, bool keepalive = true, string listenOptions = "",
        string serverDirectives = "")
    {
        string dir = Path.Combine(host.Topology.WorkDir, "nginx-" + name);
        Directory.CreateDirectory(Path.Combine(dir, "tmp"));
        string conf = Path.Combine(dir, "nginx.conf");
        await File.WriteAllTextAsync(conf, $$"""
            worker_processes 1;
            daemon off;
            master_process off;
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log warn;
            events { worker_connections 1024; }
            http {
                access_log off;
                client_body_temp_path {{dir}}/tmp/body;
                proxy_temp_path {{dir}}/tmp/proxy;
                fastcgi_temp_path {{dir}}/tmp/fastcgi;
                uwsgi_temp_path {{dir}}/tmp/uwsgi;
                scgi_temp_path {{dir}}/tmp/scgi;
                keepalive_timeout {{(keepalive ? "60s" : "0")}};
                server {
                    listen {{port}} {{listenOptions}};
                    {{serverDirectives}}
                    location / { {{location ?? EchoLocation(name)}} }
                }
            }
            """);
        var start = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string arg in new[] { "netns", "exec", host.Namespace, "nginx", "-e", Path.Combine(dir, "error.log"), "-p", dir, "-c", conf })
        {
            start.ArgumentList.Add(arg);
        }

        Process process = Process.Start(start) ?? throw new InvalidOperationException("cannot start nginx");
        var server = new NginxServer(process, dir);
        host.Topology.Track(server);
        await server.WaitListeningAsync(host, port, name);
        return server;
    }

    private async Task WaitListeningAsync(NetnsHost host, int port, string name)
    {
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"nginx {name} exited ({_process.ExitCode}): {await _process.StandardError.ReadToEndAsync()} {ErrorLog()}");
            }

            CommandResult ss = await host.RunAsync("ss", "-Htln", $"sport = :{port}");
            if (ss.Stdout.Contains(':' + port.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal))
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"nginx {name} is not listening on {port} after 10 s: {ErrorLog()}");
    }

    private string ErrorLog()
    {
        string path = Path.Combine(_dir, "error.log");
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or SocketException)
        {
            // Gone already.
        }

        _process.Dispose();
    }
}
