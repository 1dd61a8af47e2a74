"""DuckDB storage on real files: idempotent upserts, price history, awkward names, the single-writer lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import duckdb
import pandas as pd
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


# --- the one upsert helper ---------------------------------------------------------------------------------

AWKWARD = "Levi's \"501\" / Ève"


def reject(url: str, reason: str = "download: HTTP 404", label: str = "worn") -> dict:
    return {"image_url": url, "label": label, "reason": reason, "rejected_at": warehouse.utcnow()}


def test_upsert_rerun_adds_no_rows_and_replaces_every_column_it_carries(db_path):
    with warehouse.connect(db_path) as con:
        rows = [reject("http://shop/img/a.jpg"), reject("http://shop/img/b.jpg")]
        assert warehouse.upsert(con, "image_rejects", rows, key=["image_url"]) == 2
        assert warehouse.upsert(con, "image_rejects", rows, key=["image_url"]) == 2  # written again, not added
        assert warehouse.upsert(con, "image_rejects", [reject("http://shop/img/a.jpg", "truncated: 10 bytes", label="not_worn")],
                                key=["image_url"]) == 1
        stored = con.execute("SELECT image_url, label, reason FROM image_rejects ORDER BY image_url").fetchall()
    assert stored == [("http://shop/img/a.jpg", "not_worn", "truncated: 10 bytes"), ("http://shop/img/b.jpg", "worn", "download: HTTP 404")]


def test_upsert_keeps_what_it_is_told_to_and_never_touches_a_column_it_does_not_carry(db_path):
    """Bad input: a second sighting with a later first_seen and no path; a status column the rows do not carry."""
    t0 = warehouse.utcnow()
    brand = {"slug": "levis", "name": "Levi's", "url": "http://shop/levis/", "path": "levis", "first_seen": t0, "last_seen": t0}
    later = {**brand, "name": "Levi's®", "path": None, "first_seen": t0 + timedelta(days=1), "last_seen": t0 + timedelta(days=1)}
    with warehouse.connect(db_path) as con:
        warehouse.upsert(con, "brands", [brand], key=["slug"], keep=["first_seen"], keep_if_null=["path"])
        con.execute("UPDATE brands SET listing_status = 'http_404' WHERE slug = 'levis'")
        warehouse.upsert(con, "brands", [later], key=["slug"], keep=["first_seen"], keep_if_null=["path"])
        row = con.execute("SELECT name, path, first_seen, last_seen, listing_status FROM brands").fetchall()
        warehouse.upsert(con, "brands", [{**later, "path": "levis-new"}], key=["slug"], keep=["first_seen"], keep_if_null=["path"])
        path = con.execute("SELECT path FROM brands").fetchone()[0]
    assert row == [("Levi's®", "levis", t0, t0 + timedelta(days=1), "http_404")]
    assert path == "levis-new"  # a path that is given does replace the stored one


def test_upsert_insert_only_leaves_a_stored_row_as_it_is(db_path):
    """Bad input: a task recorded again (a re-run after Label Studio created it) once it was retired."""
    task = {"project_key": 1, "task_id": 7, "image_url": "http://shop/img/a.jpg", "project_id": 3, "created_at": warehouse.utcnow()}
    with warehouse.connect(db_path) as con:
        assert warehouse.upsert(con, "label_tasks", [task], key=["project_key", "task_id"], insert_only=True) == 1
        con.execute("UPDATE label_tasks SET retired_at = now(), retired_reason = 'deleted in Label Studio'")
        again = {**task, "image_url": "http://shop/img/other.jpg", "created_at": task["created_at"] + timedelta(hours=1)}
        assert warehouse.upsert(con, "label_tasks", [again], key=["project_key", "task_id"], insert_only=True) == 0
        rows = con.execute("SELECT image_url, created_at, retired_reason FROM label_tasks").fetchall()
    assert rows == [("http://shop/img/a.jpg", task["created_at"], "deleted in Label Studio")]


@pytest.mark.parametrize("insert_only", [False, True], ids=["replace-last-wins", "insert-only-first-wins"])
def test_upsert_batch_with_the_same_key_twice_acts_as_one_row_after_the_other(db_path, insert_only):
    """Bad input: one batch holding the same key twice, once new and once already stored. DuckDB would silently
    take the first of them; the helper keeps what upserting them one by one gives."""
    with warehouse.connect(db_path) as con:
        warehouse.upsert(con, "image_rejects", [reject("http://shop/img/stored.jpg", "empty: 0 bytes")], key=["image_url"])
        batch = [reject(url, reason) for url in ("http://shop/img/new.jpg", "http://shop/img/stored.jpg")
                 for reason in ("download: HTTP 500", "download: HTTP 404")]
        warehouse.upsert(con, "image_rejects", batch, key=["image_url"], insert_only=insert_only)
        stored = dict(con.execute("SELECT image_url, reason FROM image_rejects").fetchall())
    if insert_only:
        assert stored == {"http://shop/img/new.jpg": "download: HTTP 500", "http://shop/img/stored.jpg": "empty: 0 bytes"}
    else:
        assert stored == {"http://shop/img/new.jpg": "download: HTTP 404", "http://shop/img/stored.jpg": "download: HTTP 404"}


def test_upsert_batch_with_the_same_key_twice_and_kept_columns(db_path):
    """Bad input: the same brand twice in one batch, one row without a path; first_seen is kept from the stored row."""
    t0 = warehouse.utcnow()
    first = {"slug": "levis", "name": "Levi's", "url": "u", "path": "levis", "first_seen": t0, "last_seen": t0}
    with warehouse.connect(db_path) as con:
        warehouse.upsert(con, "brands", [first], key=["slug"], keep=["first_seen"], keep_if_null=["path"])
        t1 = t0 + timedelta(days=1)
        batch = [{**first, "name": "A", "first_seen": t1, "last_seen": t1}, {**first, "name": "B", "path": None, "first_seen": t1, "last_seen": t1}]
        warehouse.upsert(con, "brands", batch, key=["slug"], keep=["first_seen"], keep_if_null=["path"])
        assert con.execute("SELECT name, path, first_seen, last_seen FROM brands").fetchall() == [("B", "levis", t0, t1)]


def test_upsert_brand_name_with_quotes_slashes_and_unicode_in_values_and_keys(db_path):
    """Bad input: Levi's "501" / Ève as a brand name, and inside the key (an image URL) of another table."""
    url = f"http://shop/img/{AWKWARD}.jpg"
    with warehouse.connect(db_path) as con:
        for _ in range(2):
            warehouse.upsert_brands(con, [{"slug": "levis-501", "name": AWKWARD, "url": "http://shop/levis-501/"}])
            warehouse.upsert(con, "image_rejects", [reject(url, reason=f"not_an_image: {AWKWARD}")], key=["image_url"])
        assert con.execute("SELECT slug, name FROM brands").fetchall() == [("levis-501", AWKWARD)]
        assert con.execute("SELECT image_url, reason FROM image_rejects").fetchall() == [(url, f"not_an_image: {AWKWARD}")]


@pytest.mark.parametrize(
    "table, rows, key, message",
    [
        ("brands", [{"slug": "x", 'name"; DROP TABLE brands; --': "y"}], ["slug"], "not a plain table or column name"),
        ("brands; DROP TABLE brands", [{"slug": "x"}], ["slug"], "not a plain table or column name"),
        ("label_tasks", [{"task_id": 1, "image_url": "u"}], ["task_id"], "not the primary key"),
        ("label_tasks", [{"project_key": 1, "image_url": "u"}], ["project_key", "task_id"], "must be columns of the rows"),
    ],
    ids=["sql-in-a-column-name", "sql-in-the-table-name", "a-key-that-is-not-the-primary-key", "rows-without-the-key"],
)
def test_upsert_refuses_names_that_are_not_plain_identifiers_and_a_wrong_key(db_path, table, rows, key, message):
    """Bad input: SQL in a table or column name, a key that is not the table's, rows that lack the key."""
    with warehouse.connect(db_path) as con:
        warehouse.upsert_brands(con, [{"slug": "levis", "name": "Levi's", "url": "u"}])
        with pytest.raises(ValueError, match=message):
            warehouse.upsert(con, table, rows, key=key)
        assert warehouse.table_counts(con)["brands"] == 1 and warehouse.table_counts(con)["label_tasks"] == 0


def test_upsert_of_no_rows_writes_nothing(db_path):
    """Bad input: an empty batch, as dicts (no columns at all) and as a frame with the columns."""
    with warehouse.connect(db_path) as con:
        assert warehouse.upsert(con, "image_rejects", [], key=["image_url"]) == 0
        assert warehouse.upsert(con, "image_rejects", pd.DataFrame(columns=["image_url", "reason"]), key=["image_url"]) == 0
        assert con.execute("SELECT count(*) FROM image_rejects").fetchone() == (0,)


def test_crawl_log_of_a_crawl_without_brands_or_stats(db_path):
    """Bad input: a crawl that listed no brand and whose stats lack every count (a list and NULLs in one row)."""
    t0 = warehouse.utcnow()
    with warehouse.connect(db_path) as con:
        warehouse.log_crawl(con, "run-empty", "zalando", [], t0, t0, {})
        warehouse.log_crawl(con, "run-empty", "zalando", ["levis"], t0, t0 + timedelta(minutes=1), {"item_scraped_count": 3})
        assert con.execute("SELECT brand_slugs, pages, items, dropped, finished_at - started_at FROM crawl_log").fetchall() == [
            (["levis"], None, 3, 0, timedelta(minutes=1))
        ]
        warehouse.log_crawl(con, "run-none", "zalando", [], t0, t0, {})
        assert con.execute("SELECT brand_slugs, pages, items, dropped FROM crawl_log WHERE crawl_id = 'run-none'").fetchone() == ([], None, None, 0)


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


# The pieces table before it had a category (the code before issue 15).
OLD_PIECES_DDL = """CREATE TABLE pieces (
    item_id TEXT PRIMARY KEY, sku TEXT, name TEXT NOT NULL, brand TEXT NOT NULL, brand_slug TEXT NOT NULL,
    price DOUBLE, currency TEXT, colour TEXT, url TEXT NOT NULL, first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL
)"""


def test_duckdb_file_without_the_category_columns_gains_them_and_keeps_its_pieces(tmp_path):
    """Bad input: a DuckDB file whose pieces table predates `category` / `category_path`, holding a piece. It opens
    (twice: the second open meets the columns the first one added), the old piece keeps its row with NULL
    categories, and a crawl that names one fills it in."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_PIECES_DDL)
    con.execute("INSERT INTO pieces VALUES ('A', 'A', 'Jeans A', 'Levi''s', 'levis', 34.99, 'EUR', 'blue', 'http://shop/A.html', now(), now())")
    con.close()
    for _ in range(2):
        with warehouse.connect(path) as con:
            assert warehouse.table_columns(con, "pieces")[-2:] == ["category", "category_path"]
            assert con.execute("SELECT name, category, category_path FROM pieces").fetchall() == [("Jeans A", None, None)]
    with warehouse.connect(path) as con:
        result = warehouse.upsert_items(con, [item("A", category="Herren", category_path="Herren > Jeans")])
        assert (result.pieces, result.pieces_new) == (1, 0)
        assert con.execute("SELECT category, category_path FROM pieces").fetchall() == [("Herren", "Herren > Jeans")]


@pytest.mark.parametrize(
    ("bad_input", "later"),
    [
        ("a later crawl whose items carry no category keys (an old feed)", {}),
        ("a later crawl with category None", {"category": None, "category_path": None}),
        ("a later crawl with blank categories", {"category": "  ", "category_path": ""}),
        ("a later crawl with a category that is not text", {"category": 7, "category_path": ["Herren"]}),
    ],
)
def test_a_crawl_without_a_category_keeps_the_known_one(db_path, bad_input, later):
    t0 = warehouse.utcnow()
    with warehouse.connect(db_path) as con:
        warehouse.upsert_items(con, [item("A", category="Damen", category_path="Damen > Schuhe")], seen_at=t0)
        counts = warehouse.table_counts(con)
        warehouse.upsert_items(con, [item("A", price=29.95, **later)], seen_at=t0 + timedelta(days=1))
        row = con.execute("SELECT category, category_path, price FROM pieces").fetchone()
        assert warehouse.table_counts(con)["pieces"] == counts["pieces"]
    assert row == ("Damen", "Damen > Schuhe", 29.95), bad_input  # the price moved, the category stayed


def test_category_with_quotes_and_unicode_round_trips_and_a_new_one_replaces_the_old(db_path):
    odd = 'Damen "Sale" \u2019s; DROP TABLE pieces; --'
    with warehouse.connect(db_path) as con:
        warehouse.upsert_items(con, [item("A", category=odd, category_path=f"{odd} > Ĺódź 👟")])
        assert con.execute("SELECT category, category_path FROM pieces").fetchone() == (odd, f"{odd} > Ĺódź 👟")
        warehouse.upsert_items(con, [item("A", category="Herren", category_path="Herren")])
        warehouse.upsert_items(con, [item("A", category="Herren", category_path="Herren")])  # idempotent
        assert con.execute("SELECT category, category_path FROM pieces").fetchall() == [("Herren", "Herren")]
