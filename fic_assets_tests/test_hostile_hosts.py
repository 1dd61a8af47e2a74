"""Image hosts that stall, trickle, lie, loop or overwhelm: every download ends, with its reason, and a run stops
when told to.

Real components: a misbehaving HTTP server on 127.0.0.1 (fic_assets_tests/hostile_host.py), the demo shop, a real
trained model with OpenVINO, DuckDB files, and the `dagster` CLI on a temp DAGSTER_HOME, stopped with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from fic_assets.defs.model import artifact
from fic_assets.platform import warehouse
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.dataset.download import CANCELLED, DownloadPolicy, fetch_many, fetch_one, make_session
from fic_assets.defs.model.scoring import FetchOptions, Scorer, SourceReader, score_stream
from fic_assets_tests.conftest import platform_env, wait_for
from fic_assets_tests.hostile_host import TRICKLE_LENGTH, HostileHost

BIN = Path(sys.executable).parent
CAP = 256 * 1024  # the byte cap of these tests: small, so an oversized body is quick to send


@pytest.fixture
def host():
    with HostileHost() as server:
        yield server


@pytest.fixture
def session():
    with make_session(8) as made:
        yield made


def policy(**overrides) -> DownloadPolicy:
    """A quick policy: short deadline, fast retries, a small cap (the settings' defaults are for a real CDN)."""
    return DownloadPolicy(**{"deadline": 2.0, "retries": 2, "backoff": 0.05, "max_bytes": CAP, **overrides})


# --- one hostile behaviour per test ------------------------------------------------------------------------------


def test_trickling_host_times_out_at_the_deadline(host, session):
    """Bad input: a host that sends Content-Length 10 MB, then one byte a second (a per-read timeout never fires)."""
    result = fetch_one(session, f"{host.url}/trickle/a?every=1", policy(max_bytes=2 * TRICKLE_LENGTH))
    assert result.data is None
    assert result.error.startswith("timed out after 2 s (deadline): "), result.error
    assert f"of {TRICKLE_LENGTH} bytes received" in result.error
    assert host.hits["/trickle/a"] == 1  # a spent deadline is final: the next run tries again, not this one
    wait_for(lambda: host.disconnects == 1, 5, "the client to hang up on the trickle")


def test_host_that_never_answers_times_out_at_the_deadline(host, session):
    """Bad input: a host that accepts the connection, reads the request and never answers (no per-read timeout
    shorter than the deadline)."""
    result = fetch_one(session, f"{host.url}/silent/a", policy(timeout=60))
    assert result.error == "timed out after 2 s (deadline): no response"
    assert host.hits["/silent/a"] == 1


def test_deadline_is_final_when_the_socket_timeout_fires_before_the_watchdog(host, session):
    """Bad input: a host that never answers, on a loaded machine where the watchdog thread runs late, so the
    socket's own read timeout (min(timeout, deadline)) ends the wait first. A spent deadline is still final, not
    retried (a retry is a second request to a host that is already not answering)."""
    from fic_assets.defs.dataset import download

    def stall_watchdog():  # the watchdog cannot run while its lock is held: as if starved of CPU past the deadline
        wait_for(lambda: host.hits["/silent/b"] == 1, 5, "the request to arrive")
        with download._WATCHDOG._lock:
            time.sleep(2.5)

    staller = threading.Thread(target=stall_watchdog, daemon=True)
    staller.start()
    result = fetch_one(session, f"{host.url}/silent/b", policy(timeout=60))
    staller.join()
    assert result.error == "timed out after 2 s (deadline): no response", result.error
    assert host.hits["/silent/b"] == 1


def test_body_over_the_cap_with_an_honest_content_length_is_refused_before_reading(host, tmp_path):
    """Bad input: a 1 MB body with its true Content-Length, over the 256 KiB cap."""
    cache = ImageCache(tmp_path)
    url = f"{host.url}/big/a?size={4 * CAP}"
    result = fetch_many([url], cache, policy=policy())[url]
    assert result.error == f"too large: Content-Length {4 * CAP} bytes is over the {CAP} byte cap"
    assert host.hits["/big/a"] == 1 and cache.get(url) is None  # final, and nothing cached


def test_body_over_the_cap_without_content_length_is_cut_while_streaming(host, tmp_path):
    """Bad input: a 1 MB body sent chunked (no Content-Length at all), over the 256 KiB cap."""
    cache = ImageCache(tmp_path)
    url = f"{host.url}/chunked/a?size={4 * CAP}"
    result = fetch_many([url], cache, policy=policy())[url]
    assert result.error == f"too large: more than the {CAP} byte cap arrived (no Content-Length)"
    assert host.hits["/chunked/a"] == 1 and cache.get(url) is None
    # Under the cap the same chunked answer is an image like any other.
    small = f"{host.url}/chunked/b?size={CAP // 2}"
    assert fetch_many([small], cache, policy=policy())[small].data == b"x" * (CAP // 2)


def test_body_over_the_cap_with_a_lying_small_content_length_stays_small(host, session):
    """Bad input: Content-Length 1000 but 1 MB written after it. Only the declared 1000 bytes are the answer (the
    decoder then calls it truncated); the rest never reaches the caller, and the connection is not reused."""
    result = fetch_one(session, f"{host.url}/lying/a?size={4 * CAP}&says=1000", policy())
    assert result.data == b"x" * 1000 and result.error is None
    after = fetch_one(session, f"{host.url}/image/after", policy())  # the leftover bytes must not become this answer
    assert after.data == b"image after"


def test_redirect_loop_is_an_error_naming_it(host, session):
    """Bad input: /loop/a redirects to /loop/b, which redirects back to /loop/a."""
    result = fetch_one(session, f"{host.url}/loop/a", policy())
    assert result.error == f"redirect loop: back at {host.url}/loop/a after 2 redirect(s)"
    assert host.hits["/loop/a"] == host.hits["/loop/b"] == 1  # final: no retry


def test_too_many_redirects_is_an_error_and_five_are_followed(host, session):
    """Bad input: a chain of six redirects (five are followed, as a CDN's short chains need)."""
    assert fetch_one(session, f"{host.url}/hops/5", policy()).data == b"image hops"
    result = fetch_one(session, f"{host.url}/hops/6", policy())
    assert result.error == "too many redirects: more than 5" and host.hits["/hops/6"] == 1


def test_not_found_is_final_at_once(host, session):
    """Bad input: an image URL that answers 404."""
    result = fetch_one(session, f"{host.url}/gone/a", policy(retries=3))
    assert result.error == "HTTP 404" and host.hits["/gone/a"] == 1


def test_service_unavailable_then_success_is_retried(host, session):
    """Bad input: a host that answers 503 (Retry-After: 0) twice, then serves the image."""
    result = fetch_one(session, f"{host.url}/flaky/a?fail=2", policy(retries=2))
    assert result.data == b"image a" and host.hits["/flaky/a"] == 3
    # With fewer tries than refusals the 503 is the recorded reason.
    assert fetch_one(session, f"{host.url}/flaky/b?fail=2", policy(retries=1)).error == "HTTP 503"


def test_per_host_concurrency_cap_and_pacing_hold(host, tmp_path):
    """Bad input: twelve slow images (0.3 s each) of one host asked for by eight workers at once."""
    urls = [f"{host.url}/image/{n}?sleep=0.3" for n in range(12)]
    paced = policy(polite_to_loopback=True, host_concurrency=2, host_delay=0.15)
    results = fetch_many(urls, ImageCache(tmp_path / "paced"), workers=8, policy=paced)
    assert all(result.ok for result in results.values())
    assert host.peak == 2  # reached, never passed
    starts = sorted(arrived for arrived, _ in host.arrivals)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= 0.1, gaps  # 0.15 s between request starts (less a little for the network's jitter)

    # The loopback demo host is our own process: by default it is not paced.
    host.peak = 0
    fast = [f"{host.url}/image/fast-{n}?sleep=0.3" for n in range(8)]
    assert all(r.ok for r in fetch_many(fast, ImageCache(tmp_path / "fast"), workers=8, policy=policy()).values())
    assert host.peak > 2


def test_cancel_stops_a_stalled_download_at_once(host, session):
    """Bad input: a trickling host with a deadline far away (60 s); the caller cancels after half a second."""
    cancel = threading.Event()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=fetch_one(
        session, f"{host.url}/trickle/c?every=0.5", policy(deadline=60, max_bytes=2 * TRICKLE_LENGTH), cancel)))
    worker.start()
    wait_for(lambda: host.hits["/trickle/c"] == 1, 5, "the download to start")
    cancel.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and outcome["result"].error == CANCELLED


def test_settings_set_the_default_policy(monkeypatch):
    """Bad input: a deadline of 0 s from the environment (a download could never succeed)."""
    monkeypatch.setenv("FIC_IMAGE_DEADLINE_SECONDS", "7.5")
    monkeypatch.setenv("FIC_IMAGE_HOST_CONCURRENCY", "3")
    made = DownloadPolicy()
    assert (made.deadline, made.host_concurrency, made.max_bytes) == (7.5, 3, 20 * 1024 * 1024)
    assert FetchOptions().deadline == 7.5  # predictions read the same settings
    monkeypatch.setenv("FIC_IMAGE_DEADLINE_SECONDS", "0")
    with pytest.raises(ValueError, match="invalid download policy"):
        DownloadPolicy()


# --- an interrupted consumer stops its downloads -------------------------------------------------------------------


class Interrupted(Exception):
    """What a signal handler raises in the main thread (Dagster turns SIGTERM into DagsterExecutionInterruptedError)."""


def test_interrupted_scoring_cancels_its_downloads_instead_of_waiting(host, trained_model, tmp_path):
    """Bad input: eight images on a trickling host (a 60 s deadline) while SIGALRM interrupts the main thread."""
    scorer = Scorer.load(trained_model)
    urls = [f"{host.url}/trickle/{n}?every=0.5" for n in range(8)]
    options = FetchOptions(deadline=60, max_bytes=2 * TRICKLE_LENGTH, workers=4)

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(Interrupted):
            list(score_stream(urls, scorer, SourceReader(ImageCache(tmp_path), options)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert host.hits["/trickle/0"] == 1  # the downloads had started
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("fic-decode")], 5,
             "the download workers to end")
    wait_for(lambda: host.disconnects == 4, 5, "every started trickle to be hung up on")


# --- end to end: SIGTERM to `dagster asset materialize`, then the next run ---------------------------------------------


BRAND = "jack-jones"  # no broken images among its first products (a CMYK JPEG and a PNG with alpha, both fine)


def predictions(db: str) -> dict[str, tuple]:
    with warehouse.connect(db, read_only=True) as con:
        return {url: rest for url, *rest in con.execute("SELECT image_url, label, error FROM predictions").fetchall()}


def test_sigterm_ends_a_prediction_run_stuck_on_a_trickling_host_and_the_rerun_completes(demo_shop_url, trained_model, tmp_path):
    """Bad input: a `brand_predictions` run whose brand has 42 images on the demo shop and 10 on a host that trickles
    one byte a second (30 s deadline), terminated with SIGTERM once the first predictions are stored.

    The CLI must exit within 15 s, keep what it stored, and a re-run with a 2 s deadline completes the partition:
    every image has a row, the trickling ones as `error` with their reason."""
    from fic_assets_tests.test_predictions import brand_rows, catalogue_items

    with HostileHost() as host:
        items, _ = catalogue_items(demo_shop_url, (BRAND,), per_brand=15)
        trickle_base = f"http://localhost:{host.server_address[1]}"  # sorts after 127.0.0.1: scored last
        for n, item in enumerate(items[12:]):
            for m, image in enumerate(item["images"]):
                image["url"] = f"{trickle_base}/trickle/{n}-{m}?every=1"
        healthy = {image["url"] for item in items[:12] for image in item["images"]}
        trickling = {image["url"] for item in items[12:] for image in item["images"]}
        assert (len(healthy), len(trickling)) == (42, 10)

        env = platform_env(tmp_path, demo_shop_url, FIC_PREDICTION_CHUNK_SIZE="16", FIC_IMAGE_DEADLINE_SECONDS="30")
        with warehouse.connect(env["FIC_DUCKDB"]) as con:
            warehouse.upsert_brands(con, brand_rows(items))
            warehouse.upsert_items(con, items)
        artifact.promote(trained_model, "hostile-v1", {"f1": 1.0}, root=Path(env["FIC_MODELS_DIR"]))
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.add_dynamic_partitions("brands", [BRAND])
        command = [str(BIN / "dagster"), "asset", "materialize", "-m", "fic_assets.definitions", "--select",
                   "brand_predictions", "--partition", BRAND]

        with open(tmp_path / "first.log", "wb") as log:
            first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(lambda: first.poll() is not None or (len(predictions(env["FIC_DUCKDB"])) >= 32
                                                               and sum(host.hits.values()) >= len(trickling)),
                         240, "two chunks of predictions stored and every trickling image asked for", interval=0.5)
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
                stored_before = predictions(env["FIC_DUCKDB"])
                os.killpg(first.pid, signal.SIGTERM)
                stopped = time.monotonic()
                try:
                    first.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"still running 15 s after SIGTERM:\n{(tmp_path / 'first.log').read_text()[-4000:]}")
                took = time.monotonic() - stopped
            finally:
                try:
                    os.killpg(first.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                first.wait()
        assert first.returncode != 0, took
        after_stop = predictions(env["FIC_DUCKDB"])
        assert stored_before.items() <= after_stop.items()  # nothing stored was lost or changed
        assert set(after_stop) <= healthy and all(label in ("worn", "not_worn") for label, _ in after_stop.values())

        env["FIC_IMAGE_DEADLINE_SECONDS"] = "2"
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        final = predictions(env["FIC_DUCKDB"])
        assert set(final) == healthy | trickling  # the partition is complete: every image has a row
        assert all(final[url][0] in ("worn", "not_worn") for url in healthy)
        for url in trickling:
            label, error = final[url]
            assert label == "error" and error.startswith("download: timed out after 2 s (deadline): "), error
        assert {url: final[url] for url in after_stop} == after_stop  # the first run's rows were not predicted again
