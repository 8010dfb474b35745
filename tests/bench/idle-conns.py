#!/usr/bin/env python3
"""Open N idle TCP connections to HOST:PORT, hold them until told, then close them all.

Used by run-bench.sh (inside the client pod's namespace) to measure what idle connections cost a
proxy: it sends nothing, so each connection stays idle end to end.

Usage: idle-conns.py [--count N] [--in-flight K] [--connect-timeout S] [--settle S] HOST PORT

Output on stdout, one line each (stdout is flushed, so a caller can wait for a line):
  held H connected C failed F peer_closed P seconds T
      all C connections are up (F could not connect; P were closed by the peer before --settle
      seconds passed; H = C - P are held); T is the time the connects took
  closed H peer_closed P
      after the release: H connections closed by us, P closed by the peer while held (P counts all)
The release: SIGUSR1, or a line on stdin (end of input is ignored, so </dev/null works); SIGTERM
and SIGINT close them too. Failures to connect are summed up by reason on stderr. Exit status 0,
1 if nothing connected, 2 on a usage or resource-limit error.
"""

import argparse
import asyncio
import collections
import errno
import resource
import signal
import sys
import threading
import time

# Besides the connections: stdio, the event loop's epoll and self-pipe, the stdin thread.
SPARE_FDS = 64


class HeldConnection(asyncio.Protocol):
    """One idle connection: never writes, only notes whether the peer ended it."""

    def __init__(self, peer_closed: collections.Counter) -> None:
        self.transport: asyncio.Transport | None = None
        self.ended = False
        self._peer_closed = peer_closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        pass  # The server has nothing to say to a connection that sent nothing; ignore it if it does.

    def eof_received(self) -> bool:
        self._note_end()
        return False  # Close our side too.

    def connection_lost(self, exc: Exception | None) -> None:
        self._note_end()

    def _note_end(self) -> None:
        if not self.ended:
            self.ended = True
            self._peer_closed["n"] += 1


def raise_nofile(needed: int) -> None:
    """Raises RLIMIT_NOFILE to at least `needed` (the hard limit too, which root may do), or exits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new_hard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, new_hard))
        except (ValueError, OSError) as e:
            print(f"idle-conns: cannot raise RLIMIT_NOFILE to {needed} for the connections "
                  f"(soft {soft}, hard {hard}): {e}; lower --count or raise the limit (ulimit -n)",
                  file=sys.stderr)
            sys.exit(2)


def failure_reason(e: BaseException) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return "timeout"
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return type(e).__name__


async def open_all(host: str, port: int, count: int, in_flight: int, timeout: float,
                   peer_closed: collections.Counter) -> tuple[list[HeldConnection], collections.Counter]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(in_flight)
    held: list[HeldConnection] = []
    failures: collections.Counter = collections.Counter()

    async def one() -> None:
        async with gate:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: HeldConnection(peer_closed), host, port), timeout)
                held.append(conn)
            except (OSError, asyncio.TimeoutError) as e:
                failures[failure_reason(e)] += 1

    await asyncio.gather(*(one() for _ in range(count)))
    return held, failures


def watch_stdin(loop: asyncio.AbstractEventLoop, release: asyncio.Event) -> None:
    """A thread: a line on stdin releases; end of input does not (stdin may be /dev/null)."""
    try:
        line = sys.stdin.readline()
    except (OSError, ValueError):
        return
    if line:
        loop.call_soon_threadsafe(release.set)


async def run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, release.set)
    threading.Thread(target=watch_stdin, args=(loop, release), daemon=True).start()

    peer_closed: collections.Counter = collections.Counter()
    started = time.monotonic()
    held, failures = await open_all(args.host, args.port, args.count, args.in_flight,
                                    args.connect_timeout, peer_closed)
    seconds = time.monotonic() - started
    if failures:
        summary = ", ".join(f"{reason} x{n}" for reason, n in failures.most_common())
        print(f"idle-conns: {sum(failures.values())} of {args.count} connects to "
              f"{args.host}:{args.port} failed: {summary}", file=sys.stderr, flush=True)
    # A proxy accepts at once and connects onwards after: a flow it cannot complete ends here.
    if not release.is_set():
        try:
            await asyncio.wait_for(release.wait(), args.settle)
        except asyncio.TimeoutError:
            pass
    ended_early = peer_closed["n"]
    print(f"held {len(held) - ended_early} connected {len(held)} failed {sum(failures.values())} "
          f"peer_closed {ended_early} seconds {seconds:.2f}", flush=True)

    await release.wait()
    ours = 0
    for conn in held:
        if not conn.ended and conn.transport is not None:
            conn.ended = True
            conn.transport.close()
            ours += 1
    await asyncio.sleep(0)  # Let the transports' close callbacks run before the loop ends.
    print(f"closed {ours} peer_closed {peer_closed['n']}", flush=True)
    return 0 if held else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=5000, help="connections to open (default 5000)")
    p.add_argument("--in-flight", type=int, default=200, help="connects in flight at once (default 200)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds per connect (default 10)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds to wait after the connects before reporting them held (default 2)")
    args = p.parse_args()
    if args.count < 1 or args.in_flight < 1 or not 0 < args.port < 65536:
        p.error("--count and --in-flight must be at least 1, PORT within 1-65535")
    raise_nofile(args.count + SPARE_FDS)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
