"""An image host that misbehaves on purpose, one path per behaviour, on 127.0.0.1 (a free port).

    /image/<name>            200, a small body (b"image <name>"); ?sleep=S holds the answer S seconds first
    /trickle/<name>          200 with Content-Length 10 MB, then one byte every ?every=S seconds (default 1)
    /silent/<name>           reads the request, never answers (until the server stops)
    /big/<name>?size=N       200, N bytes with an honest Content-Length
    /chunked/<name>?size=N   200, N bytes chunked, no Content-Length
    /lying/<name>?size=N&says=M   200, Content-Length M but N bytes written
    /loop/a, /loop/b         302 to each other
    /hops/<k>                k redirects (to /hops/<k-1>, ..., /hops/1 to /image/hops)
    /gone/<name>             404
    /flaky/<name>?fail=K     503 (Retry-After: 0) for the first K requests of the path, then /image/<name>

It counts requests per path (`hits`), requests being answered right now and the most at once (`peak`), and
when each request arrived (`arrivals`, monotonic seconds), so a test can check what a client did to it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from fic_assets_tests.loopback import LoopbackServer

TRICKLE_LENGTH = 10 * 1024 * 1024


class HostileHost(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(_Handler, "hostile-host", host)
        self.stopping = threading.Event()
        self.hits: Counter = Counter()
        self.active = 0
        self.peak = 0
        self.arrivals: list[tuple[float, str]] = []
        self.disconnects = 0  # trickles and silences whose client went away

    def stop(self) -> None:
        self.stopping.set()  # trickles and silences end, so their handler threads do too


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a CDN: a client reuses connections
    server: HostileHost

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        kind, _, name = parts.path.strip("/").partition("/")
        with self.server.lock:
            self.server.hits[parts.path] += 1
            count = self.server.hits[parts.path]
            self.server.active += 1
            self.server.peak = max(self.server.peak, self.server.active)
            self.server.arrivals.append((time.monotonic(), parts.path))
        try:
            self.behave(kind, name, query, count)
        finally:
            with self.server.lock:
                self.server.active -= 1

    def behave(self, kind: str, name: str, query: dict[str, str], count: int) -> None:
        if kind == "image":
            if "sleep" in query:
                self.server.stopping.wait(float(query["sleep"]))
            self.answer(200, f"image {name}".encode())
        elif kind == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(TRICKLE_LENGTH))
            self.end_headers()
            self.drip(float(query.get("every", "1")))
        elif kind == "silent":
            self.server.stopping.wait()
            self.close_connection = True
        elif kind == "big":
            self.answer(200, b"x" * int(query["size"]))
        elif kind == "chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = int(query["size"])
            while left > 0 and not self.server.stopping.is_set():
                piece = b"x" * min(left, 65536)
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                left -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "lying":
            self.send_response(200)
            self.send_header("Content-Length", query["says"])
            self.end_headers()
            self.wfile.write(b"x" * int(query["size"]))
            self.close_connection = True
        elif kind == "loop":
            self.redirect("/loop/b" if name == "a" else "/loop/a")
        elif kind == "hops":
            hops = int(name)
            self.redirect(f"/hops/{hops - 1}" if hops > 1 else "/image/hops")
        elif kind == "flaky" and count <= int(query.get("fail", "1")):
            self.answer(503, b"busy, try again", {"Retry-After": "0"})
        elif kind == "flaky":
            self.answer(200, f"image {name}".encode())
        else:
            self.answer(404, b"no such image")

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def drip(self, every: float) -> None:
        """One byte per `every` seconds until the client hangs up or the server stops."""
        try:
            for _ in range(TRICKLE_LENGTH):
                self.wfile.write(b"x")
                self.wfile.flush()
                if self.server.stopping.wait(every):
                    break
        except OSError:  # the client gave up: what a deadline should make it do
            with self.server.lock:
                self.server.disconnects += 1
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass
