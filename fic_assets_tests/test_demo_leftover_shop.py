"""A leftover demo shop that answers its health check but 500s on its pages is not reused: `fic demo-shop
--background` and `fic demo` stop with an error naming its pid and port and how to stop it. Real HTTP servers: a
real `fic demo-shop` whose checkout was deleted under it, and one that answers health 200 and every page 500."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from fic_assets.demo import run as demo
from fic_assets.demo.shop import server as shop
from fic_assets.demo.shop.pages import SHOP_ID
from fic_assets.platform import processes
from fic_assets.platform.settings import REPO_ROOT
from fic_assets_tests.conftest import free_port, wait_for


class HealthOnly(BaseHTTPRequestHandler):
    """The demo shop's health (seed 42, drawings) and robots.txt; every page a 500, as a shop without templates."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_demo/health":
            status, body = 200, json.dumps({"shop": SHOP_ID, "seed": 42, "products": 1, "photos": None}).encode()
        elif self.path == "/robots.txt":
            status, body = 200, b"User-agent: *\n"
        else:
            status, body = 500, b"internal error in the demo shop\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def health_only_shop():
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_shop_answering_health_but_500_on_pages_is_refused_naming_its_pid_and_how_to_stop_it(
        health_only_shop, tmp_path, monkeypatch, capsys):
    """Bad input: a listener that answers /_demo/health as our shop (same seed) but 500 on /brands/, recorded in no
    pid file here (started from another checkout): both commands refuse it and name this process as its pid."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path))
    url, port = health_only_shop
    assert shop.main(["--background", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"the demo shop on {url} (pid {os.getpid()}, port {port}) answers its health check but not its pages" in err
    assert f"GET {url}/brands/ answered 500" in err
    assert f"`kill {os.getpid()}`; `fic demo --stop` does not know it" in err
    assert not shop.pid_file(port).exists()
    with pytest.raises(SystemExit, match=rf"\(pid {os.getpid()}, port {port}\) answers its health check but not its pages"):
        demo.ensure_demo_shop(url)


def test_a_real_shop_whose_checkout_was_deleted_is_refused_and_fic_demo_stop_ends_it(tmp_path, monkeypatch, capsys):
    """Bad input: `fic demo-shop --background` started from a checkout that is then deleted: the running shop
    answers its health from memory, its pages (templates read from the gone checkout) are 500s. The error names the
    recorded pid and `fic demo --stop`, which stops it; then a fresh shop starts on the same port."""
    data = tmp_path / "data"
    monkeypatch.setenv("FIC_DATA_DIR", str(data))
    monkeypatch.setenv("FIC_LABEL_STUDIO_DATA_DIR", str(tmp_path / "label_studio"))  # --stop: no Label Studio of others
    checkout = tmp_path / "old-checkout"
    shutil.copytree(REPO_ROOT / "fic_assets", checkout / "fic_assets", ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "FIC_DATA_DIR": str(data), "PYTHONPATH": str(checkout)}
    started = subprocess.run([sys.executable, "-m", "fic_assets.cli", "demo-shop", "--background", "--port", str(port)],
                             cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    try:
        assert started.returncode == 0 and started.stdout.strip() == url, started.stderr
        leftover = processes.recorded(shop.pid_file(port))
        assert leftover is not None and psutil.Process(leftover.pid).cwd() == str(checkout)
        shutil.rmtree(checkout)
        assert shop.page_problem(url) == f"GET {url}/brands/ answered 500"

        assert shop.main(["--background", "--port", str(port)]) == 1
        err = capsys.readouterr().err
        assert f"(pid {leftover.pid}, port {port}) answers its health check but not its pages" in err
        assert f"stop it with `fic demo --stop` (or `fic demo-shop --stop --port {port}`)" in err
        with pytest.raises(SystemExit, match=f"pid {leftover.pid}, port {port}"):
            demo.ensure_demo_shop(url)

        assert demo.main(["--stop"]) == 0
        assert f"stopped the demo shop on {url} (pid {leftover.pid})" in capsys.readouterr().out
        assert shop.probe(url) is None
        assert shop.main(["--background", "--port", str(port)]) == 0  # a fresh shop, from this checkout
        wait_for(lambda: shop.page_problem(url) is None, 10, "the fresh shop's pages")
        demo.ensure_demo_shop(url)
    finally:
        processes.stop(shop.pid_file(port))
