#!/usr/bin/python3
"""A WebSocket client for the gateway tests: ws-client.py URL COUNTER_FILE STOP_FILE.
Opens one connection (never reconnects), sends a message every 50 ms and checks its echo, writes how many
round trips succeeded to COUNTER_FILE after each, and exits 0 with "closed cleanly after N" once STOP_FILE
exists; any failure (the connection dropped, a wrong echo) exits 1 saying what happened."""
import asyncio
import os
import sys

import websockets


async def main():
    url, counter, stop = sys.argv[1:4]
    count = 0
    try:
        async with websockets.connect(url, open_timeout=10, ping_interval=None) as socket:
            print("open", flush=True)
            while not os.path.exists(stop):
                await socket.send(f"m{count}")
                answer = await asyncio.wait_for(socket.recv(), 10)
                if not answer.endswith(f": m{count}"):
                    print(f"wrong echo after {count}: {answer!r}", flush=True)
                    sys.exit(1)
                count += 1
                with open(counter + ".tmp", "w") as f:
                    f.write(str(count))
                os.replace(counter + ".tmp", counter)
                await asyncio.sleep(0.05)
        print(f"closed cleanly after {count}", flush=True)
    except Exception as e:  # noqa: BLE001 - the test wants whatever ended the connection, in one line
        print(f"failed after {count}: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)


asyncio.run(main())
