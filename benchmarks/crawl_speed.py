"""Demo-shop crawl: items per second for a real `scrapy crawl zalando` of every brand (one subprocess).

The demo shop runs in its own process so it does not share the crawler's core.

    .venv/bin/python benchmarks/crawl_speed.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fic_assets.demo.shop.catalogue import build_catalogue  # noqa: E402
from fic_assets.defs.crawl.crawler import CrawlerResource  # noqa: E402


def main() -> None:
    # Port 0: the shop binds a free port and prints its URL on its first line once it listens.
    shop = subprocess.Popen(
        [sys.executable, "-m", "fic_assets.cli", "demo-shop", "--port", "0"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    base = shop.stdout.readline().split(" on ")[1].split()[0]
    try:
        brands = [brand.path for brand in build_catalogue(seed=42).brands]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = CrawlerResource(shop_url=base).crawl_brands(brands, Path(tmp))
            seconds = time.perf_counter() - start
    finally:
        os.killpg(shop.pid, 15)
        shop.wait()
    items = len(result.items)
    record(
        "crawl_speed",
        {
            "brands": len(brands),
            "pages": result.pages,
            "items": items,
            "seconds_incl_scrapy_start": round(seconds, 1),
            "items_per_s": round(items / seconds, 1),
            "pages_per_s": round(result.pages / seconds, 1),
        },
    )


if __name__ == "__main__":
    main()
