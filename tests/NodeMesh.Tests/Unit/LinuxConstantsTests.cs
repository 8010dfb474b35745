using System.Diagnostics;
using NodeMesh.Interop;

namespace NodeMesh.Tests.Unit;

/// <summary>Checks the agent's libc constants against the C headers of this machine, by compiling a probe.</summary>
public class LinuxConstantsTests
{
    [Fact]
    public async Task Constants_MatchTheCHeaders()
    {
        string dir = Directory.CreateTempSubdirectory("nm-consts").FullName;
        try
        {
            string source = Path.Combine(dir, "probe.c");
            await File.WriteAllTextAsync(source, """
                #define _GNU_SOURCE
                #include <stdio.h>
                #include <sched.h>
                #include <fcntl.h>
                #include <errno.h>
                #include <sys/socket.h>
                #include <netinet/in.h>
                #include <netinet/tcp.h>
                #include <linux/netfilter_ipv4.h>
                #include <sys/file.h>
                #include <sys/ioctl.h>
                #include <linux/nsfs.h>
                int main(void) {
                  printf("%d %d %d %d %d %d %d %d %d %d %d %d", CLONE_NEWNET, SOL_SOCKET, SOL_IP, SO_REUSEADDR, SO_LINGER, SO_MARK,
                         IP_TRANSPARENT, SO_ORIGINAL_DST, O_RDONLY, O_CLOEXEC, EINTR, AF_INET);
                  printf(" %d %d", IPPROTO_TCP, TCP_USER_TIMEOUT);
                  printf("\n");
                  printf("%d %d %d %d %d %d %d %d", O_RDWR, O_CREAT, LOCK_EX, LOCK_NB, EWOULDBLOCK, SO_PEERCRED, SO_PEERGROUPS, ERANGE);
                  printf(" %d %d %d\n", (int)NS_GET_NSTYPE, ENOTTY, EINVAL);
                  return 0;
                }
                """);
            string binary = Path.Combine(dir, "probe");
            (int rc, string output) = await RunAsync("gcc", "-o", binary, source);
            Assert.True(rc == 0, "gcc failed (./build.sh deps installs it): " + output);
            (rc, output) = await RunAsync(binary);
            Assert.Equal(0, rc);
            int[] expected =
            [
                LinuxConstants.CLONE_NEWNET, LinuxConstants.SOL_SOCKET, LinuxConstants.SOL_IP, LinuxConstants.SO_REUSEADDR, LinuxConstants.SO_LINGER,
                LinuxConstants.SO_MARK, LinuxConstants.IP_TRANSPARENT, LinuxConstants.SO_ORIGINAL_DST, LinuxConstants.O_RDONLY,
                LinuxConstants.O_CLOEXEC, LinuxConstants.EINTR, LinuxConstants.AF_INET,
                LinuxConstants.IPPROTO_TCP, LinuxConstants.TCP_USER_TIMEOUT,
            ];
            int[] expectedMore =
            [
                LinuxConstants.O_RDWR, LinuxConstants.O_CREAT, LinuxConstants.LOCK_EX, LinuxConstants.LOCK_NB, LinuxConstants.EWOULDBLOCK,
                LinuxConstants.SO_PEERCRED, LinuxConstants.SO_PEERGROUPS, LinuxConstants.ERANGE,
                LinuxConstants.NS_GET_NSTYPE, LinuxConstants.ENOTTY, LinuxConstants.EINVAL,
            ];
            Assert.Equal(string.Join(' ', expected) + "\n" + string.Join(' ', expectedMore), output.Trim());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void DecodeSockaddrIn_ReadsNetworkOrderPortAndAddress()
    {
        byte[] sockaddr = [2, 0, 0x1f, 0x90, 10, 240, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0];
        Assert.Equal(System.Net.IPEndPoint.Parse("10.240.2.2:8080"), SocketOptions.DecodeSockaddrIn(sockaddr));
        sockaddr[0] = 10;
        Assert.Throws<InteropException>(() => SocketOptions.DecodeSockaddrIn(sockaddr));
    }

    private static async Task<(int, string)> RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        string stdout = await process.StandardOutput.ReadToEndAsync();
        string stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, stdout + stderr);
    }
}
