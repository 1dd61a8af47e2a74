"""DuckDB storage: schema, connections that wait for the single writer, idempotent upserts.

Plain functions over a DuckDB connection so they are testable without Dagster. Every statement is
parameterized: values travel as parameters or as a registered Arrow/pandas relation, never inside SQL text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

# One statement each; CREATE ... IF NOT EXISTS keeps ensure_schema idempotent.
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS brands (
        slug TEXT PRIMARY KEY,          -- Dagster partition key: [a-z0-9-] only
        name TEXT NOT NULL,             -- display name as the shop writes it (Levi's, Björn Borg, ...)
        url TEXT NOT NULL,              -- the brand's listing page
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        last_crawled TIMESTAMPTZ
    )""",
    """CREATE TABLE IF NOT EXISTS pieces (
        item_id TEXT PRIMARY KEY,       -- the shop SKU, else a stable hash of the product URL
        sku TEXT,
        name TEXT NOT NULL,
        brand TEXT NOT NULL,            -- brand as printed on the product page
        brand_slug TEXT NOT NULL,       -- the brand partition the product was crawled under
        price DOUBLE,                   -- lowest current offer; NULL when the page shows none
        currency TEXT,
        colour TEXT,
        url TEXT NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS price_history (
        item_id TEXT NOT NULL,
        price DOUBLE,
        currency TEXT,
        seen_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (item_id, seen_at)
    )""",
    """CREATE TABLE IF NOT EXISTS images (
        image_url TEXT PRIMARY KEY,
        item_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        is_packshot BOOLEAN NOT NULL,   -- the shop's own flag (filter=packshot in the URL)
        flag_model INTEGER NOT NULL DEFAULT -1,  -- 1 worn, 0 not worn, -1 unknown until a model flags it
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS crawl_log (
        crawl_id TEXT PRIMARY KEY,      -- the Dagster run id (or any caller-chosen id)
        spider TEXT NOT NULL,
        brand_slugs TEXT[] NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ NOT NULL,
        pages INTEGER,
        items INTEGER,
        dropped INTEGER,
        stats JSON
    )""",
    # --- predictions (the production model, per brand) ---
    """CREATE TABLE IF NOT EXISTS predictions (
        image_url TEXT PRIMARY KEY,     -- the latest prediction of an image; images.flag_model mirrors it
        item_id TEXT NOT NULL,
        brand_slug TEXT NOT NULL,       -- the brand partition that predicted it
        label TEXT NOT NULL,            -- worn / not_worn, or error when the image could not be scored
        score DOUBLE,                   -- P(worn); NULL for an error
        error TEXT,                     -- why there is no score ("download: HTTP 404", "truncated: ...")
        model_version TEXT NOT NULL,
        predicted_at TIMESTAMPTZ NOT NULL
    )""",
    # --- labelling (Label Studio) ---
    """CREATE TABLE IF NOT EXISTS label_tasks (
        image_url TEXT PRIMARY KEY,     -- one Label Studio task per image, ever
        task_id BIGINT NOT NULL,
        project_id INTEGER NOT NULL,
        item_id TEXT,
        brand_slug TEXT,
        pre_label TEXT,                 -- the pre-annotation shown to the annotator
        pre_score DOUBLE,
        pre_model_version TEXT,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS annotations (
        annotation_id BIGINT PRIMARY KEY,  -- Label Studio's id; the raw material `labels` is resolved from
        project_id INTEGER NOT NULL,
        task_id BIGINT NOT NULL,
        image_url TEXT NOT NULL,
        item_id TEXT,
        annotator TEXT,
        label TEXT,                     -- worn / not_worn / unusable; NULL when the annotation is not usable
        problem TEXT,                   -- why label is NULL (unknown choice, no choice, cancelled)
        created_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        lead_time DOUBLE
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        image_url TEXT PRIMARY KEY,     -- the resolved human label of an image (see labelling/labels.py)
        item_id TEXT,
        label TEXT NOT NULL,            -- worn / not_worn / unusable (unusable is kept, never trained on)
        annotator TEXT,
        annotated_at TIMESTAMPTZ NOT NULL,
        task_id BIGINT NOT NULL,
        annotation_id BIGINT NOT NULL,
        lead_time DOUBLE,
        annotations INTEGER NOT NULL,   -- usable annotations behind the label
        agreement DOUBLE NOT NULL       -- share of annotators who chose the winning label
    )""",
)
# No secondary indexes: DuckDB turns an UPDATE of an indexed column into delete + insert (100k-piece upserts
# went from 0.1 s to 6 s with an index on pieces.brand_slug), and its zone maps already serve per-brand scans.

PIECE_COLUMNS = ("item_id", "sku", "name", "brand", "brand_slug", "price", "currency", "colour", "url")
IMAGE_COLUMNS = ("image_url", "item_id", "position", "is_packshot")


class DuckDBBusyError(RuntimeError):
    """Another process held the DuckDB write lock for longer than we were willing to wait."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _is_lock_error(error: duckdb.Error) -> bool:
    return "lock" in str(error).lower()


@contextmanager
def connect(path: str | Path, read_only: bool = False, wait_seconds: float = 120.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the DuckDB file, waiting while another process holds the lock.

    DuckDB lets one process write a file at a time (and a read-only open fails while a writer holds it).
    Dagster serializes writers with the `duckdb` pool; this wait covers what the pool cannot see
    (a sensor reading while a run writes, a user's own session), so no lock error reaches the user.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(f"DuckDB file {path} does not exist yet: materialize the `brands` asset first")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            if not _is_lock_error(error) or time.monotonic() >= deadline:
                if _is_lock_error(error):
                    raise DuckDBBusyError(f"DuckDB file {path} stayed locked by another process for {wait_seconds:.0f} s: {error}") from error
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        if not read_only:
            ensure_schema(con)
        yield con
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for statement in SCHEMA:
        con.execute(statement)


_open_transactions: set[int] = set()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All-or-nothing block; nested use joins the outer transaction so callers can group upserts."""
    if id(con) in _open_transactions:
        yield
        return
    con.execute("BEGIN TRANSACTION")
    _open_transactions.add(id(con))
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
    finally:
        _open_transactions.discard(id(con))


# --- brands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrandUpsert:
    total: int
    new: list[str]


def upsert_brands(con: duckdb.DuckDBPyConnection, brands: Iterable[dict], seen_at: datetime | None = None) -> BrandUpsert:
    """Insert new brands, refresh names/URLs of known ones. Rows: {slug, name, url}."""
    seen_at = seen_at or utcnow()
    frame = pd.DataFrame(list(brands), columns=["slug", "name", "url"]).drop_duplicates("slug", keep="last")
    frame["seen_at"] = seen_at
    with transaction(con):
        con.register("incoming_brands", frame)
        try:
            new = [
                row[0]
                for row in con.execute(
                    "SELECT slug FROM incoming_brands WHERE slug NOT IN (SELECT slug FROM brands) ORDER BY slug"
                ).fetchall()
            ]
            con.execute(
                """INSERT INTO brands (slug, name, url, first_seen, last_seen)
                   SELECT slug, name, url, seen_at, seen_at FROM incoming_brands
                   ON CONFLICT (slug) DO UPDATE SET name = excluded.name, url = excluded.url, last_seen = excluded.last_seen"""
            )
        finally:
            con.unregister("incoming_brands")
    return BrandUpsert(total=len(frame), new=new)


def brand_slugs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """All known brand slugs in the order they were first seen (so new ones come last)."""
    return [row[0] for row in con.execute("SELECT slug FROM brands ORDER BY first_seen, slug").fetchall()]


def brand_urls(con: duckdb.DuckDBPyConnection, slugs: Sequence[str]) -> dict[str, str]:
    rows = con.execute("SELECT slug, url FROM brands WHERE list_contains(?, slug)", [list(slugs)]).fetchall()
    return dict(rows)


# --- pieces, images, prices ------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlUpsert:
    pieces: int
    pieces_new: int
    images: int
    images_new: int
    price_changes: int
    skipped: int

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def _frames(items: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Split crawled items into a pieces frame and an images frame; count items too broken to store."""
    pieces, images, skipped = [], [], 0
    for item in items:
        if not item.get("item_id") or not item.get("name") or not item.get("url") or not item.get("brand_slug"):
            skipped += 1
            continue
        pieces.append({column: item.get(column) for column in PIECE_COLUMNS})
        for image in item.get("images") or ():
            images.append(
                {
                    "image_url": image["url"],
                    "item_id": item["item_id"],
                    "position": int(image.get("position", 0)),
                    "is_packshot": bool(image.get("is_packshot", False)),
                }
            )
    piece_frame = pd.DataFrame(pieces, columns=list(PIECE_COLUMNS)).drop_duplicates("item_id", keep="last")
    piece_frame["price"] = pd.to_numeric(piece_frame["price"], errors="coerce").astype("float64")
    piece_frame["brand"] = piece_frame["brand"].fillna("")
    image_frame = pd.DataFrame(images, columns=list(IMAGE_COLUMNS)).drop_duplicates("image_url", keep="first")
    image_frame["position"] = image_frame["position"].astype("int32")
    image_frame["is_packshot"] = image_frame["is_packshot"].astype("bool")
    return piece_frame, image_frame, skipped


def upsert_items(con: duckdb.DuckDBPyConnection, items: Iterable[dict], seen_at: datetime | None = None) -> CrawlUpsert:
    """Store crawled products and their images in one transaction.

    Re-running with the same items changes no row count; a changed price appends to price_history.
    flag_model is never touched here: it belongs to the model.
    """
    seen_at = seen_at or utcnow()
    piece_frame, image_frame, skipped = _frames(items)
    piece_frame["seen_at"] = seen_at
    image_frame["seen_at"] = seen_at
    with transaction(con):
        con.register("incoming_pieces", piece_frame)
        con.register("incoming_images", image_frame)
        try:
            pieces_new = con.execute(
                "SELECT count(*) FROM incoming_pieces WHERE item_id NOT IN (SELECT item_id FROM pieces)"
            ).fetchone()[0]
            images_new = con.execute(
                "SELECT count(*) FROM incoming_images WHERE image_url NOT IN (SELECT image_url FROM images)"
            ).fetchone()[0]
            # A price row when a piece is new or its price/currency moved; before the pieces upsert so the
            # comparison sees the old price.
            price_changes = con.execute(
                """INSERT INTO price_history (item_id, price, currency, seen_at)
                   SELECT i.item_id, i.price, i.currency, i.seen_at
                   FROM incoming_pieces i LEFT JOIN pieces p USING (item_id)
                   WHERE p.item_id IS NULL OR p.price IS DISTINCT FROM i.price OR p.currency IS DISTINCT FROM i.currency
                   ON CONFLICT DO NOTHING"""
            ).fetchone()[0]
            con.execute(
                """INSERT INTO pieces (item_id, sku, name, brand, brand_slug, price, currency, colour, url, first_seen, last_seen)
                   SELECT item_id, sku, name, brand, brand_slug, price, currency, colour, url, seen_at, seen_at
                   FROM incoming_pieces
                   ON CONFLICT (item_id) DO UPDATE SET
                       sku = excluded.sku, name = excluded.name, brand = excluded.brand,
                       brand_slug = excluded.brand_slug, price = excluded.price, currency = excluded.currency,
                       colour = excluded.colour, url = excluded.url, last_seen = excluded.last_seen"""
            )
            con.execute(
                """INSERT INTO images (image_url, item_id, position, is_packshot, first_seen, last_seen)
                   SELECT image_url, item_id, position, is_packshot, seen_at, seen_at FROM incoming_images
                   ON CONFLICT (image_url) DO UPDATE SET
                       item_id = excluded.item_id, position = excluded.position,
                       is_packshot = excluded.is_packshot, last_seen = excluded.last_seen"""
            )
        finally:
            con.unregister("incoming_pieces")
            con.unregister("incoming_images")
    return CrawlUpsert(
        pieces=len(piece_frame),
        pieces_new=int(pieces_new),
        images=len(image_frame),
        images_new=int(images_new),
        price_changes=int(price_changes),
        skipped=skipped,
    )


def mark_crawled(con: duckdb.DuckDBPyConnection, slugs: Sequence[str], crawled_at: datetime) -> None:
    con.execute("UPDATE brands SET last_crawled = ? WHERE list_contains(?, slug)", [crawled_at, list(slugs)])


def log_crawl(
    con: duckdb.DuckDBPyConnection,
    crawl_id: str,
    spider: str,
    brand_slugs: Sequence[str],
    started_at: datetime,
    finished_at: datetime,
    stats: dict,
) -> None:
    """One crawl_log row per crawl id; a retried run overwrites its own row instead of adding one."""
    con.execute(
        """INSERT INTO crawl_log (crawl_id, spider, brand_slugs, started_at, finished_at, pages, items, dropped, stats)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (crawl_id) DO UPDATE SET spider = excluded.spider, brand_slugs = excluded.brand_slugs,
               started_at = excluded.started_at, finished_at = excluded.finished_at, pages = excluded.pages,
               items = excluded.items, dropped = excluded.dropped, stats = excluded.stats""",
        [
            crawl_id,
            spider,
            list(brand_slugs),
            started_at,
            finished_at,
            stats.get("response_received_count"),
            stats.get("item_scraped_count"),
            stats.get("item_dropped_count", 0),
            json.dumps(stats, default=str),
        ],
    )


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = con.execute(
        """SELECT (SELECT count(*) FROM brands), (SELECT count(*) FROM pieces), (SELECT count(*) FROM price_history),
                  (SELECT count(*) FROM images), (SELECT count(*) FROM crawl_log), (SELECT count(*) FROM label_tasks),
                  (SELECT count(*) FROM labels), (SELECT count(*) FROM predictions)"""
    ).fetchone()
    return dict(zip(("brands", "pieces", "price_history", "images", "crawl_log", "label_tasks", "labels", "predictions"), row))
