"""The deployment issue's reliability suite: each bad event, then the platform's own next run.

Crash mid-crawl, S3 down during `dvc push`, Label Studio down during a sensor tick, an image host failing half
the time, two runs writing DuckDB at once, a corrupt file in the image cache. Real components only: the demo
shop (behind small proxies that fail, slow down or count requests), Scrapy subprocesses, the `dagster` CLI on a
temp DAGSTER_HOME with the platform's dagster.yaml (pool `duckdb`, one slot), a real Label Studio, moto S3 and
DVC, a real trained model. The lower layers have their own tests (test_storage: the lock wait; test_imageset:
the cache and DVC; test_labelling, test_crawl_assets, test_predictions: services down); here each scenario
goes through Dagster and ends with the next run completing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import pytest
import urllib3

from fic_assets.platform import warehouse
from fic_assets.demo.shop.catalogue import build_catalogue, image_url
from fic_assets.platform.instance import ensure_pools
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.conftest import free_port, platform_env
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


def wait_for(condition, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


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


# --- 1. a crash in the middle of a crawl, then the re-run ------------------------------------------------------


@pytest.fixture
def slow_shop(demo_shop_url):
    """The demo shop behind a proxy that delays product pages by 1 s while `slow` is set: a crawl long enough to kill."""
    slow = threading.Event()
    slow.set()
    with ShopProxy(demo_shop_url, lambda kind, path, n: 1.0 if kind == "product" and slow.is_set() else None) as proxy:
        yield proxy, slow


def test_crawler_killed_mid_crawl_fails_the_run_and_the_rerun_stores_each_product_once(slow_shop, tmp_path, monkeypatch):
    """Bad input: the Scrapy process is SIGKILLed (as the OOM killer does) while it crawls three brands in one run.

    The platform's own instance config (pool `duckdb`, one slot), in process; the Dagster run fails naming the
    crawl and its log, DuckDB gets nothing half-written, and the re-run of the same range stores exactly the
    crawled pages' products and images, each once."""
    from fic_assets.defs.crawl.assets import brand_catalogue
    from fic_assets.defs.crawl.jobs import crawl_job
    from fic_assets.defs.crawl.crawler import CrawlerResource

    proxy, slow = slow_shop
    env = platform_env(tmp_path, proxy.url)
    monkeypatch.setenv("FIC_DATA_DIR", env["FIC_DATA_DIR"])  # crawl feeds and logs
    seed_brands(env, proxy.url)
    defs = dg.Definitions(assets=[brand_catalogue], jobs=[crawl_job], resources={
        "duckdb": DuckDBResource(path=env["FIC_DUCKDB"]), "crawler": CrawlerResource(shop_url=proxy.url, max_pages=1)})
    tags = {"dagster/asset_partition_range_start": CRAWL_BRANDS[0], "dagster/asset_partition_range_end": CRAWL_BRANDS[-1]}
    data_dir = Path(env["FIC_DATA_DIR"])
    expected_items, _ = expected_catalogue(proxy.url, CRAWL_BRANDS)

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        outcome = {}
        crawl = threading.Thread(target=lambda: outcome.update(result=defs.resolve_job_def("crawl_job").execute_in_process(
            instance=instance, tags=tags, raise_on_error=False)))
        crawl.start()
        # Scrapy buffers its feed: count product pages served instead, so the kill lands early in the crawl.
        wait_for(lambda: proxy.count("product") >= 6, 120, "the first product pages to be crawled")
        killed = my_children(str(data_dir / "crawls"))
        assert len(killed) == 1, killed
        served = proxy.count("product")
        os.kill(killed[0], signal.SIGKILL)
        crawl.join(timeout=120)
        assert served < len(expected_items) and feed_lines(data_dir) < len(expected_items)  # killed in the middle

        first = outcome["result"]
        assert not first.success
        failure = next(event for event in first.all_events if event.is_step_failure).step_failure_data.error
        message = error_chain(failure)
        assert "scrapy crawl zalando" in message and "exit -9" in message and "zalando.log" in message, message
        assert instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
        with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
            counts = warehouse.table_counts(con)
        assert (counts["pieces"], counts["images"], counts["price_history"], counts["crawl_log"]) == (0, 0, 0, 0)

        slow.clear()
        again = defs.resolve_job_def("crawl_job").execute_in_process(instance=instance, tags=tags)
        assert again.success
        assert instance.get_materialized_partitions(dg.AssetKey("pieces")) == set(CRAWL_BRANDS)
    assert_exact_catalogue(env["FIC_DUCKDB"], proxy.url, CRAWL_BRANDS)


class PoolSlotHeld(AssertionError):
    """A run waits for a `duckdb` pool slot that no live run holds."""


def run_until_done_or_blocked(command: list[str], env: dict, log: Path, timeout: float = 240, blocked_for: float = 10) -> str:
    """Run a CLI materialization to its end; fail (and stop it) if its step waits on the duckdb pool for blocked_for s."""
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline, blocked_since = time.monotonic() + timeout, None
    try:
        while process.poll() is None:
            if blocked_since is None and "Step blocked by limit for pool duckdb" in log.read_text(errors="replace"):
                blocked_since = time.monotonic()
            if blocked_since is not None and time.monotonic() - blocked_since > blocked_for:
                raise PoolSlotHeld(f"the re-run waits for the `duckdb` pool slot, held by no live run, for > {blocked_for:g} s "
                                   f"(it would wait forever):\n{log.read_text(errors='replace')[-1500:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command} did not finish in {timeout:g} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text(errors="replace")
    assert process.returncode == 0, f"{command} exited {process.returncode}:\n{output[-4000:]}"
    return output


def test_crawl_run_killed_hard_then_the_same_materialization_completes(slow_shop, tmp_path):
    """Bad input: the whole run of `dagster asset materialize --select pieces,image_urls --partition-range ...`
    (run process, step process, Scrapy) is SIGKILLed mid-crawl, as by a host reboot or `docker kill`.

    The same command again must complete, with each product stored once, and the instance must not show the
    killed run as a success."""
    proxy, slow = slow_shop
    env = platform_env(tmp_path, proxy.url)
    seed_brands(env, proxy.url)
    command = materialize_command(CRAWL_BRANDS[0], CRAWL_BRANDS[-1])
    data_dir = Path(env["FIC_DATA_DIR"])
    expected_items, _ = expected_catalogue(proxy.url, CRAWL_BRANDS)

    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: proxy.count("product") >= 6 or first.poll() is not None, 180, "the first product pages to be crawled")
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)  # the group this test started: CLI, step process, Scrapy
        except ProcessLookupError:
            pass
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert feed_lines(data_dir) < len(expected_items)  # killed in the middle
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (killed,) = instance.get_runs()
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        assert warehouse.table_counts(con)["pieces"] == 0  # nothing half-written

    # The killed run still holds the `duckdb` pool slot; the daemon's dead_run_sensor (or, without a daemon, this
    # command) marks it failed and frees the slot.
    released = subprocess.run([sys.executable, "-m", "fic_assets.cli", "release-dead-runs"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert released.returncode == 0 and f"released 1 dead run(s): {killed.run_id}" in released.stdout, released

    slow.clear()
    output = run_until_done_or_blocked(command, env, tmp_path / "rerun.log")
    assert "Could not set lock" not in output and "DuckDBBusyError" not in output
    assert_exact_catalogue(env["FIC_DUCKDB"], proxy.url, CRAWL_BRANDS)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert [run.status for run in instance.get_runs() if run.run_id != killed.run_id] == [dg.DagsterRunStatus.SUCCESS]


# --- 2. S3 down during `dvc push` ----------------------------------------------------------------------------


def remote_keys(s3, prefix: str) -> set[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key_id,
                          aws_secret_access_key=s3.secret_access_key, region_name="us-east-1")
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=f"{prefix}/"):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def dvc_objects(project: Path, digest: str, prefix: str) -> set[str]:
    """The remote keys a pushed image set consists of: every file's md5 object and the .dir listing itself."""
    listing = json.loads((project / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).read_text())
    return {f"{prefix}/files/md5/{entry['md5'][:2]}/{entry['md5'][2:]}" for entry in listing} | {f"{prefix}/files/md5/{digest[:2]}/{digest[2:]}"}


def test_s3_going_down_during_dvc_push_fails_the_run_clearly_and_the_next_run_pushes_everything(demo_shop_url, s3, tmp_path, monkeypatch):
    """Bad input: the S3 endpoint dies in the middle of `dvc push` (after the first uploads went through: new
    connections refused, open ones reset), then comes back on the same address.

    The image_set run fails with an error naming the endpoint; the next run completes and every object of the
    image set is in the bucket. botocore's own retries are turned down (AWS_MAX_ATTEMPTS=1) so the outage is
    reported in seconds, not after a minute of backoff that ends in the same error."""
    from fic_assets.defs.dataset.assets import image_set
    from fic_assets.defs.dataset.dvc import ImageSetStore
    from fic_assets_tests.test_model_assets import labelled_demo_images, seed_labels

    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path / "data"))  # the image cache
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    switch = TcpSwitch(int(s3.endpoint_url.rsplit(":", 1)[1]), cut_after_puts=5).up()
    project, prefix = tmp_path / "project", f"reliability-{tmp_path.name}"
    resources = {
        "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb")),
        "image_store": ImageSetStore(dvc_root=str(project), image_set_dir=str(project / "datasets" / "images"), endpoint_url=switch.url,
                                     bucket=s3.bucket, prefix=prefix, access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key),
    }
    seed_labels(resources["duckdb"], labelled_demo_images(demo_shop_url))
    try:
        with dg.instance_for_test() as instance:
            failed = dg.materialize([image_set], resources=resources, instance=instance, raise_on_error=False)
            assert switch.puts >= 5 and not switch.is_up  # it went down mid-transfer, not before
            assert not failed.success
            assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
            error = error_chain(next(event for event in failed.all_events if event.is_step_failure).step_failure_data.error)
            assert f"DvcError: S3 remote at {switch.url} is not reachable" in error, error
            assert "is the S3 service, MinIO in the compose stack, running?" in error
            assert not failed.asset_materializations_for_node("image_set")
            partial = remote_keys(s3, prefix)

            switch.cut_after_puts = None
            switch.up()  # S3 is back, same endpoint
            result = dg.materialize([image_set], resources=resources, instance=instance, raise_on_error=False)
            assert result.success
            digest = result.asset_materializations_for_node("image_set")[0].metadata["dvc_hash"].value
    finally:
        switch.down()
    expected = dvc_objects(project, digest, prefix)
    assert len(expected) == 48 + 1  # 24 worn + 24 not worn images (the 3 broken ones rejected), and the listing
    assert len(partial) < len(expected)  # the failed push really stopped part-way
    assert remote_keys(s3, prefix) == expected


# --- 3. Label Studio down during a sensor tick ----------------------------------------------------------------


@dg.definitions
def annotation_sensor_location() -> dg.Definitions:
    """The labelling domain as a code location the sensor daemon loads; Label Studio configured by env, as deployed."""
    from fic_assets.definitions import domain_defs
    from fic_assets.defs.labelling.client import LabelStudioResource

    return dg.Definitions.merge(domain_defs("labelling"), dg.Definitions(resources={
        "label_studio": LabelStudioResource(url=dg.EnvVar("FIC_LABEL_STUDIO_URL"), token=dg.EnvVar("FIC_LABEL_STUDIO_TOKEN"),
                                            project_title=dg.EnvVar("FIC_TEST_PROJECT_TITLE"), timeout_seconds=10),
        "duckdb": DuckDBResource(path=dg.EnvVar("FIC_DUCKDB")),
    }))


class SensorDaemon:
    """One code location and the sensor daemon's own iteration over it (what `dagster-daemon` does every tick)."""

    def __init__(self, instance: dg.DagsterInstance):
        from dagster._core.remote_origin import InProcessCodeLocationOrigin
        from dagster._core.test_utils import create_test_daemon_workspace_context
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
        from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

        self.instance = instance
        origin = LoadableTargetOrigin(module_name=__name__, attribute="annotation_sensor_location",
                                      working_directory=str(Path(__file__).resolve().parents[1]))
        self._context = create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin)), instance)
        self.workspace = self._context.__enter__()
        self.clock = time.time()

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def sensor(self, name: str):
        (entry,) = self.workspace.create_request_context().get_code_location_entries().values()
        assert entry.code_location, entry.load_error
        (repository,) = entry.code_location.get_repositories().values()
        return repository.get_sensor(name)

    def tick(self, name: str):
        """One daemon iteration, a minute after the last (past the sensor's minimum interval); the sensor's newest tick."""
        import logging

        from dagster._core.test_utils import freeze_time
        from dagster._daemon.sensor import execute_sensor_iteration

        self.clock += 60
        with freeze_time(self.clock):
            list(execute_sensor_iteration(self.workspace, logging.getLogger("sensor-daemon"), None, None))
        sensor = self.sensor(name)
        return self.instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)[0]

    def cursor(self, name: str) -> str | None:
        sensor = self.sensor(name)
        state = self.instance.get_instigator_state(sensor.get_remote_origin_id(), sensor.selector_id)
        return state.instigator_data.cursor if state and state.instigator_data else None


def test_label_studio_down_during_a_sensor_tick_fails_the_tick_keeps_the_cursor_and_loses_no_annotation(
        label_studio, tmp_path, monkeypatch):
    """Bad input: Label Studio goes down (connections refused, open ones reset) between two annotation_sensor ticks,
    while an annotation made just before the outage is still unseen.

    Evaluated by the sensor daemon's own iteration over a code location (dagster-internal test helpers, pinned
    Dagster version), so the tick record, the stored cursor and the queued runs are Dagster's, not the test's:
    the tick fails naming the server, the cursor stays, and the first tick after Label Studio is back requests
    the run for the annotation made before the outage."""
    from datetime import datetime

    from dagster._core.scheduler.instigation import TickStatus

    from fic_assets.defs.labelling.client import LabelStudioResource
    from fic_assets_tests.test_labelling import annotate, project_tasks, seed_catalogue, start_round

    switch = TcpSwitch(int(label_studio.url.rsplit(":", 1)[1])).up()  # Label Studio's address, as the platform sees it
    title = f"fic reliability {uuid.uuid4().hex[:8]}"
    # The test's own hands (setting up the round, annotating) talk to Label Studio directly, never through the switch.
    resources = {"label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=title),
                 "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb"))}
    monkeypatch.setenv("FIC_LABEL_STUDIO_URL", switch.url)
    monkeypatch.setenv("FIC_LABEL_STUDIO_TOKEN", label_studio.token)
    monkeypatch.setenv("FIC_TEST_PROJECT_TITLE", title)
    monkeypatch.setenv("FIC_DUCKDB", resources["duckdb"].path)
    seed_catalogue(resources["duckdb"])
    queued = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}}
    with dg.instance_for_test(overrides=queued) as instance:
        daemon = SensorDaemon(instance)
        try:
            start_round(resources, instance)  # the project and its tasks
            first = daemon.tick("annotation_sensor")
            assert first.status == TickStatus.SUCCESS and len(first.run_ids) == 1, first
            cursor = daemon.cursor("annotation_sensor")
            assert cursor

            task = project_tasks(resources)[0]
            annotate(resources, task.id, "worn")  # made before the outage, not yet seen by the sensor
            switch.down()
            down = daemon.tick("annotation_sensor")
            # A failed tick (or, as good, a skip) whose text names the server and what to do.
            assert down.status in (TickStatus.FAILURE, TickStatus.SKIPPED), down
            said = error_chain(down.error) if down.status == TickStatus.FAILURE else down.skip_reason
            assert f"Label Studio at {switch.url} is not reachable" in said, said
            assert "start it with label_studio/start or fix FIC_LABEL_STUDIO_URL" in said
            assert daemon.cursor("annotation_sensor") == cursor  # nothing skipped over
            assert len(instance.get_runs(filters=dg.RunsFilter(job_name="human_labels_job"))) == 1  # no run requested

            switch.up()
            back = daemon.tick("annotation_sensor")
            assert back.status == TickStatus.SUCCESS and len(back.run_ids) == 1, back
            assert datetime.fromisoformat(daemon.cursor("annotation_sensor")) > datetime.fromisoformat(cursor)
            (run,) = instance.get_runs(filters=dg.RunsFilter(run_ids=list(back.run_ids)))
            assert run.job_name == "human_labels_job" and run.tags["fic/changed_tasks"] == "1"  # the annotation of the outage
            assert run.status == dg.DagsterRunStatus.QUEUED
        finally:
            daemon.close()
            switch.down()


# --- 4. an image host failing half the time ---------------------------------------------------------------------


PREDICT_BRANDS = ("levis", "jack-jones")  # a truncated JPEG, a decompression bomb, a CMYK JPEG, a PNG with alpha among them


class Predictions:
    """The predictions domain on a DuckDB holding the first products of two brands, whose images come through proxy."""

    def __init__(self, proxy: ShopProxy, trained_model: Path, tmp_path: Path, monkeypatch, per_brand: int = 12):
        from fic_assets.defs.model import artifact
        from fic_assets.definitions import domain_defs
        from fic_assets_tests.test_predictions import brand_rows, catalogue_items

        self.db = tmp_path / "fic.duckdb"
        self.cache_dir = tmp_path / "cache"
        monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
        monkeypatch.setenv("FIC_IMAGE_CACHE_DIR", str(self.cache_dir))
        self.items, self.images = catalogue_items(proxy.url, PREDICT_BRANDS, per_brand=per_brand)  # image URL -> catalogue image
        with warehouse.connect(self.db) as con:
            warehouse.upsert_brands(con, brand_rows(self.items))
            warehouse.upsert_items(con, self.items)
        artifact.promote(trained_model, "reliability-v1", {"f1": 1.0})
        self.defs = dg.Definitions.merge(domain_defs("predictions", "reports"), dg.Definitions(resources={"duckdb": DuckDBResource(path=str(self.db))}))

    def run(self, instance) -> dg.ExecuteInProcessResult:
        tags = {"dagster/asset_partition_range_start": PREDICT_BRANDS[0], "dagster/asset_partition_range_end": PREDICT_BRANDS[-1]}
        return self.defs.resolve_job_def("predict_job").execute_in_process(instance=instance, tags=tags, raise_on_error=False)

    def stored(self) -> dict[str, tuple]:
        with warehouse.connect(self.db, read_only=True) as con:
            return {url: rest for url, *rest in con.execute("SELECT image_url, label, score, error, predicted_at FROM predictions").fetchall()}

    def healthy(self) -> set[str]:
        """Images a working host serves as decodable pictures (CMYK and PNG-alpha included: converted, not rejected)."""
        return {url for url, image in self.images.items() if image.defect in (None, "cmyk", "png_alpha")}


@pytest.fixture
def predictions_instance():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("brands", list(PREDICT_BRANDS))
        yield instance


def refusals(path: str) -> int:
    """How many times the flaky host answers 503 for a path before serving it: 0-3, fixed by the path's hash."""
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % 4


def test_image_host_failing_half_the_time_retries_records_and_the_next_run_fills_the_rest(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: an image host that answers 503 to about half of the requests: each image URL is refused 0 to
    3 times (by a hash of its path) before it is served, so the download retries (3 tries per run) save most
    of them within the run and the rest fail for this run only. The demo shop's broken images are there too.

    brand_predictions over two brands completes; what still failed is stored as `error` with its reason; the
    next run tries only those again, and in the end every healthy image has a prediction."""
    with ShopProxy(demo_shop_url, lambda kind, path, n: 503 if kind == "image" and n <= refusals(path) else None) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch)
        healthy = platform.healthy()
        path_of = {url: url.split(proxy.url, 1)[1] for url in platform.images}
        gave_up = {url for url in healthy if refusals(path_of[url]) == 3}  # refused more often than a run tries
        saved = {url for url in healthy if refusals(path_of[url]) in (1, 2)}  # refused, then served on a retry
        assert gave_up and saved

        first = platform.run(predictions_instance)
        assert first.success
        asked, refused = proxy.count("image"), proxy.count("image", failed=True)
        assert refused >= 0.4 * asked, (refused, asked)  # the host really failed about half the time
        after_first = platform.stored()
        assert after_first.keys() == set(platform.images)  # every image has a row: a label or a recorded failure
        assert all(after_first[url][0] in ("worn", "not_worn") for url in saved)  # the retries turned these into successes
        assert {after_first[url][2] for url in gave_up} == {"download: HTTP 503"}  # recorded, with the reason
        metadata = first.asset_materializations_for_node("brand_predictions")[0].metadata
        missing = sum(image.defect == "missing" for image in platform.images.values())  # the shop's own 404s, final
        assert metadata["error_reasons"].value["download"] == len(gave_up) + missing

        second = platform.run(predictions_instance)
        assert second.success
        metadata = second.asset_materializations_for_node("brand_predictions")[0].metadata
        first_errors = {url for url, row in after_first.items() if row[0] == "error"}
        assert metadata["predicted"].value == len(first_errors)  # only the failures were tried again
        final = platform.stored()
        assert {url for url, row in final.items() if row[0] in ("worn", "not_worn")} == healthy
        assert not any("503" in (row[2] or "") for row in final.values())
        assert {url: row for url, row in final.items() if url not in first_errors} == {url: row for url, row in after_first.items() if url not in first_errors}
        # One request for each refused image (the host had recovered); the broken ones came from the cache.
        assert proxy.count("image") - asked == len(gave_up)


def test_image_host_cutting_every_other_transfer_short_is_retried(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: an image host that drops the connection in the middle of every other image body (headers and
    half the bytes sent, then closed), as a flaky CDN or proxy does. A retry gets the whole image.

    brand_predictions must complete with a prediction for every healthy image."""
    with ShopProxy(demo_shop_url, lambda kind, path, n: "cut" if kind == "image" and n % 2 == 1 else None) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch, per_brand=3)
        result = platform.run(predictions_instance)
        error = "" if result.success else error_chain(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)
        assert result.success, error
        assert proxy.count("image", failed=True) >= len(platform.images)  # every image was cut once
        stored = platform.stored()
        assert {url for url, row in stored.items() if row[0] in ("worn", "not_worn")} == platform.healthy()


# --- 5. two runs writing DuckDB at once ---------------------------------------------------------------------


def hold_duckdb(path: str) -> subprocess.Popen:
    """Another process with the DuckDB file open for writing (a person's notebook), until a line on its stdin."""
    code = "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); sys.stdin.readline(); con.close()"
    holder = subprocess.Popen([sys.executable, "-c", code, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def step_window(instance: dg.DagsterInstance, run_id: str, step: str = "brand_catalogue") -> tuple[float, float]:
    from dagster._core.events import DagsterEventType

    start = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
    end = instance.all_logs(run_id, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE})
    return ([r.timestamp for r in start if r.step_key == step][0], [r.timestamp for r in end if r.step_key == step][0])


def test_two_crawl_runs_at_once_on_one_duckdb_both_complete_serialized(demo_shop_url, tmp_path):
    """Bad input: two `dagster asset materialize` runs (brand partitions levis and jack-jones) started at the same
    moment on the same DuckDB file and DAGSTER_HOME, while a third process (a person's notebook) holds the file.

    Two layers keep lock errors away from the user, and this test sees both: the instance's `duckdb` pool (one
    slot, from the platform's dagster.yaml; CLI runs honour it, unlike tests' execute_in_process on a bare
    instance) serializes the two runs' steps, and the notebook, which no pool knows of, is waited out by
    warehouse.connect: the first step starts while the file is locked and crawls only after it is released."""
    env = platform_env(tmp_path, demo_shop_url)
    seed_brands(env, demo_shop_url, ("levis", "jack-jones"))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        ensure_pools(instance)  # as fic demo / scripts/ui do: no first-claim race between the two runs
    holder = hold_duckdb(env["FIC_DUCKDB"])
    logs = {slug: tmp_path / f"{slug}.log" for slug in ("levis", "jack-jones")}
    runs = {}
    try:
        for slug, log in logs.items():
            with log.open("w") as out:
                runs[slug] = subprocess.Popen(materialize_command(slug), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: any("STEP_START" in log.read_text(errors="replace") for log in logs.values())
                 or any(run.poll() is not None for run in runs.values()), 180, "a crawl step to start", interval=0.2)
        time.sleep(4)  # the step (its first act: open DuckDB) is now waiting for the lock
        released = warehouse.utcnow()
        holder.communicate("release\n", timeout=30)
        for slug, run in runs.items():
            run.wait(timeout=240)
    finally:
        for run in runs.values():
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    outputs = {slug: log.read_text(errors="replace") for slug, log in logs.items()}
    for slug, run in runs.items():
        assert run.returncode == 0, f"{slug} exited {run.returncode}:\n{outputs[slug][-4000:]}"
        for lock_error in ("Could not set lock", "Conflicting lock", "DuckDBBusyError", "IO Error"):
            assert lock_error not in outputs[slug], (slug, lock_error)

    assert_exact_catalogue(env["FIC_DUCKDB"], demo_shop_url, ("levis", "jack-jones"))
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        crawl_started = dict(con.execute("SELECT crawl_id, started_at FROM crawl_log").fetchall())
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.get_runs()
        assert sorted(run.status.value for run in records) == ["SUCCESS", "SUCCESS"]
        windows = sorted(step_window(instance, run.run_id) + (run.run_id,) for run in records)
    (first_start, first_end, first_run), (second_start, _, _) = windows
    assert first_end <= second_start  # serialized by the pool: one DuckDB writer at a time
    assert first_start < released.timestamp() < crawl_started[first_run].timestamp()  # waited for the notebook's lock




# --- 6. a corrupt file in the image cache ------------------------------------------------------------------------


def test_corrupt_image_cache_entries_are_fetched_again_and_predict_as_before(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: after a predictions run, three entries of the shared image cache are damaged: one image file
    overwritten with random bytes of the same length (bit rot, a stray edit), one cut to half its length (a crash
    or a full disk), one checksum sidecar that is no longer JSON.

    A newly promoted model (same weights, new version) re-predicts every image from the cache: the damaged
    entries are detected and fetched again from the shop (seen at a counting proxy), nothing else is, and every
    image gets the same prediction as before, none a spurious "truncated" or "not an image"."""
    from fic_assets.defs.model import artifact
    from fic_assets.defs.dataset.cache import ImageCache
    from fic_assets_tests.test_predictions import new_version_of

    with ShopProxy(demo_shop_url) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch, per_brand=6)
        assert platform.run(predictions_instance).success
        before = platform.stored()
        requests = proxy.count("image")
        assert requests == len(platform.images)  # each image fetched once, then cached

        cache = ImageCache(platform.cache_dir)
        garbage, halved, bad_sidecar = damaged = sorted(platform.healthy())[:3]
        original = {url: cache.get(url) for url in damaged}
        assert all(original.values())
        cache.data_path(garbage).write_bytes(os.urandom(len(original[garbage])))
        cache.data_path(halved).write_bytes(original[halved][: len(original[halved]) // 2])
        cache.sidecar_path(bad_sidecar).write_text("{not json", encoding="utf-8")

        artifact.promote(new_version_of(trained_model, tmp_path / "v2", "reliability-v2"), "reliability-v2", {"f1": 1.0})
        result = platform.run(predictions_instance)
        assert result.success
        assert result.asset_materializations_for_node("brand_predictions")[0].metadata["predicted"].value == len(platform.images)
        hits = {path: n for (kind, path), n in proxy.hits.items() if kind == "image"}
        assert proxy.count("image") - requests == 3  # only the damaged entries were fetched again...
        assert [hits[url.split(proxy.url, 1)[1]] for url in damaged] == [2, 2, 2]  # ...each once more

    after = platform.stored()
    assert after.keys() == before.keys()
    for url, (label, score, error, _) in before.items():
        new_label, new_score, new_error, _ = after[url]
        assert (new_label, new_error) == (label, error), (url, platform.images[url].defect, error, new_error)
        assert new_score == pytest.approx(score, abs=1e-6) if score is not None else new_score is None
    assert {url: ImageCache(platform.cache_dir).get(url) for url in damaged} == original  # the cache is whole again
