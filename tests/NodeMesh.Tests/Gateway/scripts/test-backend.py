#!/usr/bin/python3
"""An HTTP/1.1 backend for the gateway tests: test-backend.py PORT NAME MODE.
MODE "alternate": answers 503 to every odd-numbered request it receives and 200 to every even one (so a request
retried once always succeeds, one not retried fails every other time); "ok": always 200; "fail": always 503.
GET /slow?ms=N waits N ms before answering 200; GET /count answers how many requests came before it;
GET /events is a server-sent event stream: "data: one", 2 s later "data: two", then the end;
POST /upload reads the body in 64 KiB pieces and answers "upload bytes=N seconds=S", S the time from its first
piece to its last (a proxy that buffered the body would deliver it all at once: S near 0).
Every other answer is "served-by=NAME n=COUNT method=METHOD path=PATH peer=PORT", PORT the connection's source port
(one per connection, so a client can count the connections its requests came over)."""
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT, NAME, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        global count
        length = int(self.headers.get("Content-Length") or 0)
        url = urlparse(self.path)
        if url.path == "/upload":
            got, first, last = 0, None, None
            while got < length:
                piece = self.rfile.read(min(65536, length - got))
                if not piece:
                    break
                now = time.monotonic()
                first = first or now
                last = now
                got += len(piece)
            self.answer(200, f"upload bytes={got} seconds={(last or 0) - (first or 0):.2f}")
            return
        if length:
            self.rfile.read(length)
        if url.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"data: one\n\n")
            self.wfile.flush()
            time.sleep(2)
            self.wfile.write(b"data: two\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if url.path == "/count":
            with lock:
                self.answer(200, str(count))
            return
        with lock:
            count += 1
            n = count
        if url.path == "/slow":
            time.sleep(int(parse_qs(url.query).get("ms", ["1000"])[0]) / 1000)
        status = 503 if MODE == "fail" or (MODE == "alternate" and n % 2 == 1) else 200
        self.answer(status, f"served-by={NAME} n={n} method={self.command} path={url.path} peer={self.client_address[1]}")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
print("listening", flush=True)
server.serve_forever()
