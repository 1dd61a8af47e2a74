"""Print a benchmark's numbers and keep them in benchmarks/results/<name>.json (the README quotes them)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
REPO = Path(__file__).resolve().parents[1]


def real_photos_dir() -> Path:
    """The real shop photos (worn/, not_worn/): $FIC_REAL_PHOTOS, else ../shared/realphotos/images; read in place."""
    folder = Path(os.environ.get("FIC_REAL_PHOTOS") or REPO.parent / "shared" / "realphotos" / "images")
    if not ((folder / "worn").is_dir() and (folder / "not_worn").is_dir()):
        sys.exit(f"real photos not found at {folder} (a folder with worn/ and not_worn/): set FIC_REAL_PHOTOS")
    return folder


def _busy_jiffies() -> int:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


@contextmanager
def meter(out: dict) -> Iterator[dict]:
    """Fills out with wall_s, own_cpu_s (this process + waited-for children), others_cores (CPU other processes
    used meanwhile, in cores: on a shared machine a number means little without it) and load."""
    tick = os.sysconf("SC_CLK_TCK")
    t0, b0, c0 = time.perf_counter(), _busy_jiffies(), os.times()
    yield out
    t1, b1, c1 = time.perf_counter(), _busy_jiffies(), os.times()
    wall = t1 - t0
    own = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) + \
          (c1.children_system - c0.children_system)
    others = max(0.0, (b1 - b0) / tick - own)
    out.update(wall_s=round(wall, 3), own_cpu_s=round(own, 2), others_cores=round(others / wall, 2) if wall > 0 else 0.0,
               load=round(os.getloadavg()[0], 2))


def record(name: str, numbers: dict) -> None:
    entry = {
        "benchmark": name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        **numbers,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    for key, value in numbers.items():
        print(f"{name}: {key} = {value}")
