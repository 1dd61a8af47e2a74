"""What the reliability suite (test_reliability_*.py) shares: proxies that break the network for real (ShopProxy:
slow, failing or counted HTTP; TcpSwitch: a TCP link that can go down) and the platform as deployed (brands in
DuckDB, partitions in the instance, the dagster CLI), with checks that nothing was lost or stored twice."""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import urllib3

from fic_assets.platform import warehouse
from fic_assets.demo.shop.catalogue import build_catalogue, image_url
from fic_assets_tests.conftest import free_port
from fic_assets_tests.loopback import LoopbackServer


BIN = Path(sys.executable).parent
CATALOGUE = build_catalogue(42)


# --- bad networks, for real ---------------------------------------------------------------------------------


class ShopProxy(LoopbackServer):
    """An HTTP proxy in front of the demo shop that counts requests and fails, slows or cuts them on demand.

    The Host header goes through unchanged, so the shop's pages link (and its image URLs point) back to the
    proxy. policy(kind, path, n) -> None (pass), a float (delay in seconds, then pass), an int >= 100 (answer
    that status), "cut" (send the headers and half the body, then close: a connection lost mid-transfer).
    kind is "image", "product" (a product page) or "other"; n counts the requests for that path, from 1.
    """

    def __init__(self, upstream: str, policy=None):
        super().__init__(_ProxyHandler, "shop-proxy")
        self.upstream = upstream.rstrip("/")
        self.policy = policy or (lambda kind, path, n: None)
        self.pool = urllib3.PoolManager(maxsize=32)
        self.hits: Counter = Counter()  # (kind, path) -> requests
        self.failed: Counter = Counter()  # (kind, path) -> requests answered with a failure

    def count(self, kind: str, failed: bool = False) -> int:
        with self.lock:
            return sum(n for (k, _), n in (self.failed if failed else self.hits).items() if k == kind)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.pool.clear()


def request_kind(path: str) -> str:
    if path.startswith("/img/"):
        return "image"
    return "product" if path.split("?")[0].endswith(".html") else "other"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: ShopProxy

    def do_GET(self) -> None:  # noqa: N802
        kind = request_kind(self.path)
        with self.server.lock:
            self.server.hits[(kind, self.path)] += 1
            n = self.server.hits[(kind, self.path)]
        action = self.server.policy(kind, self.path, n)
        if isinstance(action, float):
            time.sleep(action)
            action = None
        if action is not None:
            with self.server.lock:
                self.server.failed[(kind, self.path)] += 1
        if isinstance(action, int):
            body = b"service unavailable, try again"
            self.send_response(action)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(body)
            return
        upstream = self.server.pool.request("GET", self.server.upstream + self.path, headers={"Host": self.headers.get("Host", "")},
                                            retries=False, redirect=False, timeout=30)
        self.send_response(upstream.status)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(upstream.data)))
        self.end_headers()
        if action == "cut":
            self.wfile.write(upstream.data[: len(upstream.data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(upstream.data)

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (or was killed): not our failure
            pass


class TcpSwitch:
    """A TCP forwarder on a fixed loopback port that can go down (refuse connections, reset the open ones) and come back.

    Put in front of a service, its URL is the service's URL for the platform: `down()` is the service dying
    mid-conversation, `up()` its restart on the same address. cut_after_puts=N takes it down by itself once
    N HTTP PUT requests went through (S3 uploads), to fail a `dvc push` in the middle of its transfer.
    """

    def __init__(self, upstream_port: int, cut_after_puts: int | None = None):
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self.cut_after_puts = cut_after_puts
        self.puts = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> TcpSwitch:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-switch", daemon=True).start()
        return self

    def down(self) -> None:
        with self.lock:
            listener, self.listener = self.listener, None
            sockets, self.sockets = self.sockets, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); a bare close() leaves the port listening
            except OSError:
                pass
            listener.close()
        for sock in sockets:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST, like a dead host
                sock.shutdown(socket.SHUT_RD)  # wakes the pipe thread blocked in recv
                sock.close()
            except OSError:
                pass

    @property
    def is_up(self) -> bool:
        return self.listener is not None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if outbound and self.cut_after_puts is not None:
                    with self.lock:
                        self.puts += data.count(b"PUT /")
                        cut = self.puts >= self.cut_after_puts and self.listener is not None
                    if cut:
                        self.down()
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def error_chain(error) -> str:
    """A SerializableErrorInfo's messages, the error first, then its causes and contexts."""
    messages = []
    while error is not None:
        messages.append(error.message.strip())
        error = error.cause or error.context
    return "\n".join(messages)


# --- the platform as deployed: brands in DuckDB, partitions in the instance, the dagster CLI --------------------


CRAWL_BRANDS = ("levis", "bjorn-borg", "jack-jones")  # an apostrophe and a non-ASCII letter in two display names


def seed_brands(env: dict, shop_url: str, slugs=CRAWL_BRANDS) -> None:
    """What `brands` and brand_sensor leave behind: the brand rows in DuckDB and the brand partitions."""
    names = {brand.path: brand.name for brand in CATALOGUE.brands}
    with warehouse.connect(env["FIC_DUCKDB"]) as con:
        warehouse.upsert_brands(con, [{"slug": slug, "name": names[slug], "url": f"{shop_url}/{slug}/"} for slug in slugs])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("brands", [slug for slug in slugs if not instance.has_dynamic_partition("brands", slug)])


def materialize_command(first: str, last: str | None = None, select: str = "pieces,image_urls") -> list[str]:
    partitions = ["--partition", first] if last is None else ["--partition-range", f"{first}...{last}"]
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "fic_assets.definitions", "--select", select, *partitions]


def expected_catalogue(shop_url: str, slugs) -> tuple[set[str], set[str]]:
    """The item ids and image URLs the first listing page of each brand holds (FIC_MAX_PAGES=1), by the kept truth.

    Björn Borg's truncated product page (cut before its gallery) is dropped by the crawler: not expected."""
    from fic_assets.demo.shop.pages import PAGE_SIZE

    products = [product for slug in slugs for product in CATALOGUE.listing(slug)[:PAGE_SIZE] if product.page_defect != "truncated"]
    return {p.item_id for p in products}, {image_url(shop_url, image) for p in products for image in p.images}


def assert_exact_catalogue(db_path, shop_url: str, slugs) -> None:
    """DuckDB holds exactly the crawled pages' products and images, each once, and one price row per product."""
    item_ids, image_urls = expected_catalogue(shop_url, slugs)
    with warehouse.connect(db_path, read_only=True) as con:
        assert {row[0] for row in con.execute("SELECT item_id FROM pieces").fetchall()} == item_ids  # nothing lost
        assert {row[0] for row in con.execute("SELECT image_url FROM images").fetchall()} == image_urls
        for table, key in (("pieces", "item_id"), ("images", "image_url"), ("price_history", "item_id, seen_at"), ("brands", "slug")):
            total, distinct = con.execute(f"SELECT count(*), count(DISTINCT ({key})) FROM {table}").fetchone()
            assert total == distinct, f"duplicate rows in {table}: {total} rows, {distinct} keys"
        # The prices did not change, so a re-run adds no price row: one per product, from the first stored crawl.
        assert con.execute("SELECT count(*), count(DISTINCT item_id) FROM price_history").fetchone() == (len(item_ids), len(item_ids))
        assert con.execute("SELECT count(*) FROM images i LEFT JOIN pieces p USING (item_id) WHERE p.item_id IS NULL").fetchone() == (0,)


def feed_lines(data_dir: Path) -> int:
    """Complete items in the Scrapy feed(s) of the crawls under FIC_DATA_DIR so far."""
    return sum(feed.read_bytes().count(b"\n") for feed in (data_dir / "crawls").glob("*/pieces/zalando.jsonl"))


def my_children(marker: str) -> list[int]:
    """Pids of this process's children whose command line contains marker (the Scrapy subprocess of one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and marker in command:
            found.append(int(entry.name))
    return found
