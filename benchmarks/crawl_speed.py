"""Demo-shop crawl on loopback with real-size pages (~660 KB product, ~600 KB listing pages): items per second for a
real `scrapy crawl zalando` of every brand (one subprocess), and the Scrapy process's memory.

The demo shop runs in its own process so it does not share the crawler's core. While Scrapy crawls, its resident
set is sampled (/proc/<pid>/status) every 0.2 s: peak RSS (VmHWM), and the RSS after the first quarter of the
crawl against the last, which says whether memory stays flat as pages go by. A one-brand crawl is measured beside
the all-brands one for the same reason. The all-brands crawl runs `--repeats` times (the machine is shared).

    .venv/bin/python benchmarks/crawl_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import meter, record  # noqa: E402

from fic_assets.demo.shop.catalogue import build_catalogue  # noqa: E402
from fic_assets.defs.crawl.crawler import CrawlerResource  # noqa: E402


def scrapy_children() -> list[int]:
    """This process's children running `scrapy crawl`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"scrapy" in cmdline:
            found.append(int(entry.name))
    return found


def status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []  # (seconds since start, RSS KB)
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.done.wait(0.2):
            for pid in scrapy_children():
                rss, hwm = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")
                if rss:
                    self.samples.append((time.perf_counter() - start, rss))
                if hwm:
                    self.peak_kb = max(self.peak_kb, hwm)

    def summary(self) -> dict:
        rss = [kb for _, kb in self.samples]
        quarter = max(1, len(rss) // 4)
        return {"peak_rss_mb": round(self.peak_kb / 1024, 1),
                "rss_mb_first_quarter_max": round(max(rss[:quarter]) / 1024, 1) if rss else None,
                "rss_mb_last_quarter_max": round(max(rss[-quarter:]) / 1024, 1) if rss else None,
                "rss_samples": len(rss)}


def crawl(base: str, brands: list[str]) -> dict:
    sampler = RssSampler()
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = CrawlerResource(shop_url=base).crawl_brands(brands, Path(tmp))
        seconds = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    stats = result.stats
    return {
        "brands": len(brands), "pages": result.pages, "items": len(result.items),
        "megabytes_received": round(int(stats.get("downloader/response_bytes", 0)) / 1e6, 1),
        "seconds_incl_scrapy_start": round(seconds, 1),
        "items_per_s": round(len(result.items) / seconds, 1), "pages_per_s": round(result.pages / seconds, 1),
        "parsed_by": {key.removeprefix("fic/parsed_by/"): n for key, n in stats.items() if key.startswith("fic/parsed_by/")},
        **sampler.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    # Port 0: the shop binds a free port and prints its URL on its first line once it listens.
    shop = subprocess.Popen(
        [sys.executable, "-m", "fic_assets.cli", "demo-shop", "--port", "0"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    base = shop.stdout.readline().split(" on ")[1].split()[0]
    load: dict = {}
    try:
        brands = [brand.path for brand in build_catalogue(seed=42).brands]
        with meter(load):
            one = crawl(base, brands[:1])
            runs = [crawl(base, brands) for _ in range(args.repeats)]
    finally:
        os.killpg(shop.pid, 15)
        shop.wait()
    median = sorted(runs, key=lambda run: run["items_per_s"])[len(runs) // 2]
    record("crawl_speed", {
        "all_brands": median,
        "all_brands_items_per_s_each_run": [run["items_per_s"] for run in runs],
        "all_brands_peak_rss_mb_each_run": [run["peak_rss_mb"] for run in runs],
        "one_brand": one,
        "repeats": args.repeats,
        "run": load,
    })
    assert statistics.median(run["items"] for run in runs) > 0


if __name__ == "__main__":
    main()
