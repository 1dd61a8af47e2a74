"""DuckDB storage on real files: idempotent upserts, price history, awkward names, the single-writer lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import duckdb
import pytest

from fic_assets.platform import warehouse
from fic_assets.defs.crawl.crawler import read_feed


def item(item_id: str, price: float | None = 34.99, brand_slug: str = "levis", n_images: int = 2, **extra) -> dict:
    return {
        "item_id": item_id,
        "sku": item_id,
        "name": f"Jeans {item_id}",
        "brand": "Levi's",
        "brand_slug": brand_slug,
        "price": price,
        "currency": "EUR",
        "colour": "blue",
        "url": f"http://shop/{item_id}.html",
        "images": [
            {"url": f"http://shop/img/{item_id}-{n}.jpg?imwidth=1800", "position": n, "is_packshot": n == 1}
            for n in range(n_images)
        ],
        **extra,
    }


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "fic.duckdb"


def test_crawling_the_same_items_twice_adds_no_rows(db_path):
    items = [item("LE221A000-K11"), item("LE221A001-K11", n_images=4)]
    with warehouse.connect(db_path) as con:
        first = warehouse.upsert_items(con, items)
        counts = warehouse.table_counts(con)
        second = warehouse.upsert_items(con, items, seen_at=warehouse.utcnow() + timedelta(days=1))
        assert warehouse.table_counts(con) == counts
    assert (first.pieces_new, first.images_new, first.price_changes) == (2, 6, 2)
    assert (second.pieces_new, second.images_new, second.price_changes) == (0, 0, 0)
    assert counts["pieces"] == 2 and counts["images"] == 6 and counts["price_history"] == 2


def test_price_change_appends_to_price_history_and_keeps_first_seen(db_path):
    t0 = warehouse.utcnow()
    with warehouse.connect(db_path) as con:
        warehouse.upsert_items(con, [item("A", price=59.95)], seen_at=t0)
        warehouse.upsert_items(con, [item("A", price=39.95)], seen_at=t0 + timedelta(days=1))
        warehouse.upsert_items(con, [item("A", price=39.95)], seen_at=t0 + timedelta(days=2))
        history = con.execute("SELECT price FROM price_history WHERE item_id = ? ORDER BY seen_at", ["A"]).fetchall()
        first_seen, last_seen, price = con.execute("SELECT first_seen, last_seen, price FROM pieces WHERE item_id = ?", ["A"]).fetchone()
    assert [row[0] for row in history] == [59.95, 39.95]
    assert price == 39.95
    assert last_seen - first_seen == timedelta(days=2)


def test_missing_price_is_stored_as_null_not_dropped(db_path):
    """Bad input: a product page without any price."""
    with warehouse.connect(db_path) as con:
        result = warehouse.upsert_items(con, [item("NOPRICE", price=None)])
        assert con.execute("SELECT price FROM pieces WHERE item_id = ?", ["NOPRICE"]).fetchone() == (None,)
    assert result.pieces == 1


def test_items_without_id_or_name_are_counted_not_stored(db_path):
    """Bad input: feed rows missing their key fields; the good row next to them still lands."""
    broken = [{"item_id": None, "name": "x", "url": "u", "brand_slug": "b"}, {"item_id": "B", "name": "", "url": "u", "brand_slug": "b"}]
    with warehouse.connect(db_path) as con:
        result = warehouse.upsert_items(con, [*broken, item("GOOD")])
        assert warehouse.table_counts(con)["pieces"] == 1
    assert result.skipped == 2


def test_the_model_flag_survives_a_recrawl(db_path):
    with warehouse.connect(db_path) as con:
        warehouse.upsert_items(con, [item("A")])
        con.execute("UPDATE images SET flag_model = 1 WHERE item_id = ?", ["A"])
        warehouse.upsert_items(con, [item("A")])
        flags = {row[0] for row in con.execute("SELECT flag_model FROM images WHERE item_id = ?", ["A"]).fetchall()}
    assert flags == {1}


@pytest.mark.parametrize(
    "name",
    ["Levi's", "Marc O'Polo", 'The "Quoted" Label', "Selected Femme/Homme", "Björn Borg", "Ève & Söhne", "x'; DROP TABLE brands; --"],
)
def test_brand_names_with_quotes_slashes_and_unicode_round_trip(db_path, name):
    """Bad input: brand names that broke the original f-string SQL."""
    with warehouse.connect(db_path) as con:
        warehouse.upsert_brands(con, [{"slug": "awkward", "name": name, "url": "http://shop/awkward/"}])
        warehouse.upsert_items(con, [item("A", brand_slug="awkward", brand=name)])
        assert con.execute("SELECT name FROM brands WHERE slug = ?", ["awkward"]).fetchone() == (name,)
        assert con.execute("SELECT brand FROM pieces WHERE brand_slug = ?", ["awkward"]).fetchone() == (name,)
        assert warehouse.table_counts(con)["brands"] == 1


def test_upsert_brands_reports_only_new_ones_and_keeps_first_seen_order(db_path):
    t0 = warehouse.utcnow()
    with warehouse.connect(db_path) as con:
        first = warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": "u1"}], seen_at=t0)
        second = warehouse.upsert_brands(
            con,
            [{"slug": "levis", "name": "Levi's®", "url": "u1"}, {"slug": "bjorn-borg", "name": "Björn Borg", "url": "u2"}],
            seen_at=t0 + timedelta(hours=1),
        )
        assert warehouse.brand_slugs(con) == ["levis", "bjorn-borg"]
        assert con.execute("SELECT name FROM brands WHERE slug = 'levis'").fetchone() == ("Levi's®",)
    assert first.new == ["levis"] and second.new == ["bjorn-borg"]


def test_failure_after_the_upsert_rolls_the_whole_crawl_back(db_path):
    """A crawl whose bookkeeping fails after its rows were written (as the assets group upsert + log)."""
    with warehouse.connect(db_path) as con:
        warehouse.upsert_items(con, [item("A")])
        before = warehouse.table_counts(con)
        with pytest.raises(RuntimeError, match="crawl log failed"):
            with warehouse.transaction(con):
                warehouse.upsert_items(con, [item("B"), item("C")])
                assert warehouse.table_counts(con)["pieces"] == 3  # visible inside the transaction
                raise RuntimeError("crawl log failed")
        assert warehouse.table_counts(con) == before


def test_bad_image_position_fails_before_anything_is_written(db_path):
    """Bad input: an image row whose position is not a number."""
    bad = item("B")
    bad["images"][1]["position"] = "not-a-number"
    with warehouse.connect(db_path) as con:
        with pytest.raises(ValueError):
            warehouse.upsert_items(con, [item("C"), bad])
        assert warehouse.table_counts(con)["pieces"] == 0


def test_crawl_log_is_one_row_per_crawl_id(db_path):
    t0 = warehouse.utcnow()
    stats = {"response_received_count": 10, "item_scraped_count": 8, "item_dropped_count": 2}
    with warehouse.connect(db_path) as con:
        for _ in range(2):  # a retried run writes its own row again
            warehouse.log_crawl(con, "run-1", "zalando", ["levis"], t0, t0, stats)
        assert con.execute("SELECT count(*), max(items), max(dropped) FROM crawl_log").fetchone() == (1, 8, 2)


def test_truncated_feed_line_is_counted_and_the_rest_kept(tmp_path):
    """Bad input: a crawl killed mid-write leaves half a JSON line at the end of the feed."""
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"item_id": "A"}\n{"item_id": "B"}\n{"item_id": "C", "na', encoding="utf-8")
    items, bad = read_feed(feed)
    assert [i["item_id"] for i in items] == ["A", "B"] and bad == 1


def _hold_write_lock(db_path, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db_path)!r})
        print("locked", flush=True)
        time.sleep({seconds})
        con.close()
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_second_writer_waits_for_the_lock_instead_of_failing(db_path):
    """Two processes writing DuckDB at once: the second waits, no lock error reaches the user."""
    with warehouse.connect(db_path):
        pass
    holder = _hold_write_lock(db_path, seconds=1.5)
    try:
        with warehouse.connect(db_path, wait_seconds=30) as con:
            warehouse.upsert_items(con, [item("A")])
            assert warehouse.table_counts(con)["pieces"] == 1
    finally:
        holder.wait(timeout=30)


def test_writer_gives_a_clear_error_when_the_lock_never_frees(db_path):
    """Bad input: another process holds the DuckDB file for longer than we wait."""
    with warehouse.connect(db_path):
        pass
    holder = _hold_write_lock(db_path, seconds=5)
    try:
        with pytest.raises(warehouse.DuckDBBusyError, match="stayed locked"):
            with warehouse.connect(db_path, wait_seconds=0.5):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_read_only_open_of_a_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize the `brands` asset"):
        with warehouse.connect(tmp_path / "absent.duckdb", read_only=True):
            pass


# --- existing DuckDB files -----------------------------------------------------------------------------------

# image_rejects as defs/dataset/build.py created it, on its first store_rejects, before the table joined SCHEMA.
OLD_REJECTS_DDL = """CREATE TABLE IF NOT EXISTS image_rejects (
    image_url TEXT PRIMARY KEY,
    label TEXT,                     -- the label it would have been filed under
    reason TEXT NOT NULL,           -- "<code>: <detail>"; code = download, empty, truncated, not_an_image, too_large
    rejected_at TIMESTAMPTZ NOT NULL
)"""


@pytest.mark.parametrize("had_rejects", [True, False], ids=["with-old-image_rejects", "never-built-an-image-set"])
def test_duckdb_file_of_the_old_code_opens_with_image_rejects_in_the_schema(tmp_path, had_rejects):
    """Bad input: a DuckDB file the old code wrote, either with the image_rejects table build.py made on the side (and
    a reject in it) or without one (no image set was ever built). Both open, twice, and keep their rows."""
    from fic_assets.defs.dataset.build import ImageSetResult, Reject, store_rejects

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for statement in warehouse.SCHEMA:
        if "image_rejects" not in statement:
            con.execute(statement)
    warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": "http://shop/levis/"}])
    if had_rejects:
        con.execute(OLD_REJECTS_DDL)
        con.execute("INSERT INTO image_rejects VALUES ('http://shop/img/old.jpg', 'worn', 'download: HTTP 404', now())")
    con.close()
    for _ in range(2):  # the second open meets the table the first one made
        with warehouse.connect(path) as con:
            assert warehouse.table_columns(con, "image_rejects") == ["image_url", "label", "reason", "rejected_at"]
            assert warehouse.brand_slugs(con) == ["levis"]
            result = ImageSetResult(counts={}, written=0, unchanged=0, moved=0, removed=0,
                                    rejects=[Reject("http://shop/img/new.jpg", "not_worn", "truncated: 10 bytes")])
            store_rejects(con, result)
            urls = [row[0] for row in con.execute("SELECT image_url FROM image_rejects ORDER BY image_url").fetchall()]
    assert urls == (["http://shop/img/new.jpg", "http://shop/img/old.jpg"] if had_rejects else ["http://shop/img/new.jpg"])
