"""The tests' own HTTP servers (a hostile image host, a hostile shop, a flaky proxy): one lifecycle for all of them."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    """Serves on 127.0.0.1 (a free port) from a daemon thread while used as a context manager.

    Handler threads are daemons and are not joined on close: a test's server may hold a deliberately stuck
    request (a trickle, a silence) that must not keep the test waiting.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str, host: str = "127.0.0.1"):
        super().__init__((host, 0), handler)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        """Before the server closes: let go of whatever the handlers are holding (subclasses)."""

    def __exit__(self, *exc) -> None:
        self.stop()
        self.shutdown()
        self.server_close()
