"""DuckDB upsert time for 100k pieces (3 images each): first load, identical re-run, re-run with 10% new prices.

    .venv/bin/python benchmarks/duckdb_upsert.py [--pieces 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _record import record  # noqa: E402

from fic_assets.platform import warehouse


def make_items(n: int, price_bump_every: int = 0) -> list[dict]:
    items = []
    for i in range(n):
        price = 19.95 + (i % 100)
        if price_bump_every and i % price_bump_every == 0:
            price -= 5
        items.append(
            {
                "item_id": f"BR{i:07d}-K11",
                "sku": f"BR{i:07d}-K11",
                "name": f"Jeans {i}",
                "brand": f"Brand {i % 1000}",
                "brand_slug": f"brand-{i % 1000}",
                "price": price,
                "currency": "EUR",
                "colour": "blue",
                "url": f"https://shop.example/p-{i}.html",
                "images": [{"url": f"https://img.example/{i}-{k}.jpg?imwidth=1800", "position": k, "is_packshot": k == 2} for k in range(3)],
            }
        )
    return items


def timed(label: str, con, items, seen_at) -> float:
    start = time.perf_counter()
    result = warehouse.upsert_items(con, items, seen_at=seen_at)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s  {result}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pieces", type=int, default=100_000)
    args = parser.parse_args()
    t0 = warehouse.utcnow()
    with tempfile.TemporaryDirectory() as tmp, warehouse.connect(Path(tmp) / "bench.duckdb") as con:
        first = timed("first load", con, make_items(args.pieces), t0)
        same = timed("identical re-run", con, make_items(args.pieces), t0 + timedelta(days=1))
        moved = timed("re-run, 10% new prices", con, make_items(args.pieces, price_bump_every=10), t0 + timedelta(days=2))
        counts = warehouse.table_counts(con)
    record(
        "duckdb_upsert",
        {
            "pieces": args.pieces,
            "images": counts["images"],
            "first_load_s": round(first, 2),
            "identical_rerun_s": round(same, 2),
            "rerun_10pct_price_changes_s": round(moved, 2),
            "price_history_rows": counts["price_history"],
        },
    )


if __name__ == "__main__":
    main()
