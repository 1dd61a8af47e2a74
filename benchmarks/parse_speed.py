"""Product pages parsed per second on one core, on real-size pages (target >= 1,000 pages/s on the JSON-LD path).

Pages come from the demo shop, which serves the real page's weight (~660 KB: hydration state, styles, tracking
around the product; fic_assets/demo/shop/weight.py), and from the hand-written real-shape pages in
fic_assets_tests/data/pages. They are fetched once, then parsed in a loop in this single process, in the same run:

- the JSON-LD path (`parse_product` as the spider calls it: the response's bytes scanned, no DOM; and from text);
- the DOM path on the same pages: the HTML fallback (their JSON-LD removed, so the markup answers), and the bare
  DOM build (`page_selector`) that any DOM-first parser pays before reading anything.

Each rate is measured `--repeats` times, per second of this process's own CPU time (what one core does when it is
ours: the machine is shared) and per wall-clock second, with the CPU other processes used meanwhile.

    .venv/bin/python benchmarks/parse_speed.py [--seconds 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import meter, record  # noqa: E402

from fic_assets.demo.shop.catalogue import catalogue_for  # noqa: E402
from fic_assets.demo.shop.server import running_demo_shop  # noqa: E402
from fic_crawler.parsing import NoProductError, page_selector, parse_product  # noqa: E402

SAVED_PAGES = Path(__file__).resolve().parents[1] / "fic_assets_tests" / "data" / "pages"
JSON_LD = re.compile(r'<script type="application/ld\+json">.*?</script>', re.S)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8")


def demo_pages(n: int) -> list[tuple[str, str]]:
    """n product pages without page defects, from several brands."""
    products = [p for p in catalogue_for(42).products if not p.page_defect][:: 7][:n]
    with running_demo_shop(seed=42, port=0) as base:
        return [(fetch(base + p.path), base + p.path) for p in products]


def rate(work: Callable[[object, str], object], pages: list[tuple[object, str]], seconds: float) -> tuple[float, float]:
    """(pages per wall second, pages per CPU second of this process): on a shared machine the second is what one
    core does when it is ours, the first what we got."""
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for html, url in pages:
            try:
                work(html, url)
            except NoProductError:
                pass
            done += 1
    return done / (time.perf_counter() - start), done / max(time.process_time() - cpu, 1e-9)


def repeated(work: Callable[[object, str], object], pages: list[tuple[object, str]], seconds: float, repeats: int) -> dict:
    rates = [rate(work, pages, seconds) for _ in range(repeats)]
    wall, cpu = [r[0] for r in rates], [r[1] for r in rates]
    return {"per_cpu_s_median": round(statistics.median(cpu), 1), "per_cpu_s_max": round(max(cpu), 1),
            "per_wall_s_median": round(statistics.median(wall), 1), "per_wall_s_min": round(min(wall), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pages", type=int, default=20)
    args = parser.parse_args()
    demo = demo_pages(args.pages)
    paths = {parse_product(html, url)["parsed_by"] for html, url in demo}
    assert paths == {"json-ld"}, paths  # the benchmark measures the path it names
    fallback = [(JSON_LD.sub("", html), url) for html, url in demo]
    assert {parse_product(html, url)["parsed_by"] for html, url in fallback} == {"html"}
    saved = [(path.read_text(encoding="utf-8"), f"https://www.zalando.de/{path.stem}.html") for path in sorted(SAVED_PAGES.glob("*.html"))]

    # As the spider hands them over: the response's bytes (scanned undecoded), and as text (fic parse-page).
    demo_bytes = [(html.encode("utf-8"), url) for html, url in demo]
    load: dict = {}
    with meter(load):
        json_ld = repeated(parse_product, demo_bytes, args.seconds, args.repeats)
        json_ld_text = repeated(parse_product, demo, args.seconds, args.repeats)
        html_fallback = repeated(parse_product, fallback, args.seconds, args.repeats)
        dom_build = repeated(lambda html, url: page_selector(html), demo, args.seconds, args.repeats)
        saved_rate = repeated(parse_product, saved, args.seconds, args.repeats)
    record("parse_speed", {
        "demo_page_kb": round(sum(len(html.encode()) for html, _ in demo) / len(demo) / 1024, 1),
        "demo_pages": len(demo),
        "json_ld_path_pages_per_s": json_ld,
        "json_ld_path_from_text_pages_per_s": json_ld_text,
        "html_fallback_pages_per_s": html_fallback,
        "dom_build_only_pages_per_s": dom_build,
        "json_ld_vs_html_fallback": round(json_ld["per_cpu_s_median"] / html_fallback["per_cpu_s_median"], 1),
        "saved_real_shape_pages_per_s": saved_rate,
        "saved_page_kb": round(sum(len(html.encode()) for html, _ in saved) / len(saved) / 1024, 1),
        "seconds_per_measurement": args.seconds,
        "repeats": args.repeats,
        "run": load,
    })


if __name__ == "__main__":
    main()
