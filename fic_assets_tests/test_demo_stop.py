"""`fic demo --stop` stops what the demo left running, for real: a background demo shop started by
`fic demo-shop --background`, the local moto S3 started by `ensure_local_s3` (each from its own process, as the
demo starts them), a Label Studio and the dashboard (`fic dashboard --background`), all stopped from another process
through their pid files."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from fic_assets.dashboard import server as dashboard
from fic_assets.defs.labelling import server as label_studio
from fic_assets.demo.shop import server as shop
from fic_assets.platform import local_s3, processes
from fic_assets_tests.conftest import free_port, require

FIC = [sys.executable, "-m", "fic_assets.cli"]


def fic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*FIC, *args], env=env, capture_output=True, text=True, timeout=120)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_demo_stop_stops_the_shop_label_studio_and_local_s3_it_started_then_says_nothing_is_left(
        tmp_path, second_label_studio, monkeypatch):
    """Bad input (the second --stop): nothing is recorded any more; it says so and exits 0."""
    require((Path(sys.executable).parent / "moto_server").exists(), "moto_server next to the platform's python")
    data = tmp_path / "demo-data"
    shop_port, s3_port, dashboard_port = free_port(), free_port(), free_port()
    shop_url, s3_url = f"http://127.0.0.1:{shop_port}", f"http://127.0.0.1:{s3_port}"
    dashboard_url = f"http://127.0.0.1:{dashboard_port}"
    env = {**os.environ, "FIC_DATA_DIR": str(data), "FIC_S3_ENDPOINT": s3_url,
           "FIC_LABEL_STUDIO_DATA_DIR": str(second_label_studio.data_dir)}
    for name in ("FIC_DATA_DIR", "FIC_S3_ENDPOINT", "FIC_LABEL_STUDIO_DATA_DIR"):
        monkeypatch.setenv(name, env[name])  # so that this process finds the same pid files
    try:
        started = fic("demo-shop", "--background", "--port", str(shop_port), env=env)
        assert started.returncode == 0 and started.stdout.strip() == shop_url, started.stderr
        s3 = subprocess.run([sys.executable, "-c", "from fic_assets.platform.local_s3 import ensure_local_s3; "
                             "print(ensure_local_s3())"], env=env, capture_output=True, text=True, timeout=120)
        assert f"started moto_server on {s3_url}" in s3.stdout, s3.stderr
        board = fic("dashboard", "--background", "--port", str(dashboard_port), env=env)
        assert board.returncode == 0 and board.stdout.strip() == dashboard_url, board.stderr
        assert answers(shop_url) and answers(s3_url) and answers(second_label_studio.url) and answers(dashboard_url)

        stopped = fic("demo", "--stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        lines = stopped.stdout.splitlines()
        assert [line.split(" (pid ")[0] for line in lines] == [
            f"[fic demo] stopped the demo shop on {shop_url}",
            f"[fic demo] stopped Label Studio on {second_label_studio.url}",
            f"[fic demo] stopped the local S3 (moto_server) on {s3_url}",
            f"[fic demo] stopped the dashboard on {dashboard_url}",
        ], stopped.stdout
        assert not answers(shop_url) and not answers(s3_url) and not answers(second_label_studio.url)
        assert not answers(dashboard_url) and not dashboard.pid_file(dashboard_port).exists()
        assert not shop.pid_file(shop_port).exists() and not local_s3.pid_file().exists()
        assert label_studio.running_server(second_label_studio.data_dir) is None

        again = fic("demo", "--stop", env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("[fic demo] nothing to stop: no background demo shop, Label Studio, local S3 "
                                       "or dashboard is recorded as running"), again.stdout
    finally:  # what a failed assertion left running (the fixture stops its Label Studio)
        for pid_file in (shop.pid_file(shop_port), local_s3.pid_file(), dashboard.pid_file(dashboard_port)):
            processes.stop(pid_file)
