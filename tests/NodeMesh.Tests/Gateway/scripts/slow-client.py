#!/usr/bin/python3
"""Slowloris for the gateway tests: slow-client.py HOST PORT CONNECTIONS SECONDS.
Opens CONNECTIONS connections that each send a request line and then one more header line a second, never
finishing the headers, for at most SECONDS. Prints one line: how many the server closed, how many it had not,
and the status codes it answered before closing (e.g. "closed=50 open=0 statuses=408:50")."""
import socket
import sys
import time
from collections import Counter

host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sockets = []
for i in range(count):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: slow.example.com\r\n")
    s.setblocking(False)
    sockets.append(s)

closed, statuses = set(), Counter()
deadline = time.monotonic() + seconds
while time.monotonic() < deadline and len(closed) < count:
    time.sleep(1)
    for i, s in enumerate(sockets):
        if i in closed:
            continue
        try:
            data = s.recv(4096)
            if data == b"":
                closed.add(i)
                continue
            statuses[data.split(b" ", 2)[1].decode()] += 1
            closed.add(i)
            continue
        except BlockingIOError:
            pass
        except OSError:
            closed.add(i)
            continue
        try:
            s.send(b"X-Slow: 1\r\n")
        except OSError:
            closed.add(i)

print(f"closed={len(closed)} open={count - len(closed)} statuses=" + ",".join(f"{k}:{v}" for k, v in sorted(statuses.items())), flush=True)
