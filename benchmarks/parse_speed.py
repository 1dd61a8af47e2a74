"""Product pages parsed per second on one core (target >= 200 pages/s).

Pages come from the demo shop (JSON-LD + ~40 recommendation cards each) and the hand-written real-shape pages
in fic_assets_tests/data/pages; they are fetched once, then parsed in a loop in this single process.

    .venv/bin/python benchmarks/parse_speed.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fic_assets.demo.shop.server import running_demo_shop  # noqa: E402
from fic_crawler.parsing import NoProductError, parse_product, product_links  # noqa: E402

SAVED_PAGES = Path(__file__).resolve().parents[1] / "fic_assets_tests" / "data" / "pages"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8", errors="replace")


def demo_pages(n: int) -> list[tuple[str, str]]:
    with running_demo_shop(seed=42, port=0) as base:
        listing_url = f"{base}/levis/"
        links = product_links(fetch(listing_url), listing_url)[:n]
        return [(fetch(link), link) for link in links]


JSON_LD = re.compile(r'<script type="application/ld\+json">.*?</script>', re.S)


def pages_per_second(pages: list[tuple[str, str]], seconds: float) -> float:
    parsed, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for html, url in pages:
            try:
                parse_product(html, url)
            except NoProductError:
                pass
            parsed += 1
    return parsed / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    demo = demo_pages(20)
    saved = [(path.read_text(encoding="utf-8"), f"https://www.zalando.de/{path.stem}.html") for path in sorted(SAVED_PAGES.glob("*.html"))]
    numbers = {
        "demo_pages_per_s": round(pages_per_second(demo, args.seconds), 1),
        "demo_page_kb": round(sum(len(html) for html, _ in demo) / len(demo) / 1024, 1),
        # The HTML fallback (no JSON-LD) walks the markup instead of reading one script.
        "demo_pages_markup_fallback_per_s": round(pages_per_second([(JSON_LD.sub("", html), url) for html, url in demo], args.seconds), 1),
    }
    if saved:
        numbers["saved_real_shape_pages_per_s"] = round(pages_per_second(saved, args.seconds), 1)
        numbers["saved_page_kb"] = round(sum(len(html) for html, _ in saved) / len(saved) / 1024, 1)
    record("parse_speed", numbers)


if __name__ == "__main__":
    main()
