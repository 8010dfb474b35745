using NodeMesh.App;

// Socket completions run on the epoll threads instead of hopping to the thread pool: every flow's pumps
// are asynchronous and never block, and a proxy saves a context switch per packet. Read once, when the
// socket engine starts, so it is set before any socket exists (an operator's own setting wins).
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

return await CommandLine.RunAsync(args);
