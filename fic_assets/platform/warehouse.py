"""DuckDB storage: schema, connections that wait for the single writer, idempotent upserts.

Plain functions over a DuckDB connection so they are testable without Dagster. Every statement is
parameterized: values travel as parameters or as a registered Arrow/pandas relation, never inside SQL text.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import dagster as dg
import duckdb
import pandas as pd

# One statement each; CREATE ... IF NOT EXISTS keeps ensure_schema idempotent.
SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS brands (
        slug TEXT PRIMARY KEY,          -- Dagster partition key: [a-z0-9-] only; a colliding path's has a hash suffix
        name TEXT NOT NULL,             -- display name as the shop writes it (Levi's, Björn Borg, ...)
        url TEXT NOT NULL,              -- the brand's listing page
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL, -- last time the brand index listed it
        last_crawled TIMESTAMPTZ,       -- last crawl whose listing answered (never moved by a failed one)
        path TEXT,                      -- the shop's brand path segment, unquoted: the brand's identity
        delisted_at TIMESTAMPTZ,        -- since when the brand index no longer lists it; NULL while listed
        gone_at TIMESTAMPTZ,            -- since when its listing answers 404/410; NULL while it answers
        listing_status TEXT,            -- how the listing answered the last crawl: ok, http_404, download_error, ...
        listing_checked_at TIMESTAMPTZ
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
        last_seen TIMESTAMPTZ NOT NULL,
        category TEXT,                  -- the shop's first category level (breadcrumb, else listing URL); NULL: none given
        category_path TEXT              -- every level between home and the product, brand left out, " > "-joined
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
        item_id TEXT NOT NULL,          -- one piece showing it (the smallest item_id); piece_images has them all
        position INTEGER NOT NULL,
        is_packshot BOOLEAN NOT NULL,   -- the shop's own flag (filter=packshot in the URL)
        flag_model INTEGER NOT NULL DEFAULT -1,  -- 1 worn, 0 not worn, -1 unknown until a model flags it
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS piece_images (
        item_id TEXT NOT NULL,          -- every piece an image belongs to: a shared image is stored for each piece
        image_url TEXT NOT NULL,
        position INTEGER NOT NULL,      -- its place in that piece's gallery
        is_packshot BOOLEAN NOT NULL,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (item_id, image_url)
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
    # Every task, annotation and label names the Label Studio project it came from by project_key: a deleted,
    # re-created or replaced project (a fresh server numbers its projects from 1 again) starts a new key and
    # leaves what the old one holds untouched. See fic_assets/defs/labelling/projects.py.
    """CREATE TABLE IF NOT EXISTS label_projects (
        project_key INTEGER PRIMARY KEY,  -- the platform's name for one Label Studio project
        project_id INTEGER NOT NULL,    -- Label Studio's id: unique on one server only
        created_at TIMESTAMPTZ,         -- Label Studio's creation time; with project_id, the project's identity
                                        -- (NULL: recorded before this table existed; claimed on first sight)
        title TEXT,
        ls_url TEXT,                    -- the Label Studio it was last seen at
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        is_current BOOLEAN NOT NULL,    -- the project rounds and pulls use now (one at most)
        left_at TIMESTAMPTZ,            -- when another project became current
        left_reason TEXT                -- why: deleted from Label Studio, or replaced by another project
    )""",
    """CREATE TABLE IF NOT EXISTS label_tasks (
        project_key INTEGER NOT NULL,   -- label_projects
        task_id BIGINT NOT NULL,
        image_url TEXT NOT NULL,        -- at most one live task (retired_at NULL) per image
        project_id INTEGER NOT NULL,    -- Label Studio's project id
        item_id TEXT,
        brand_slug TEXT,
        pre_label TEXT,                 -- the pre-annotation shown to the annotator
        pre_score DOUBLE,
        pre_model_version TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        retired_at TIMESTAMPTZ,         -- the task is gone (deleted in Label Studio, or its project left):
        retired_reason TEXT,            -- its image may be offered again in a later round
        PRIMARY KEY (project_key, task_id)
    )""",
    """CREATE TABLE IF NOT EXISTS annotations (
        project_key INTEGER NOT NULL,   -- label_projects; replaced per project by a complete pull
        annotation_id BIGINT NOT NULL,  -- Label Studio's id; the raw material `labels` is resolved from
        project_id INTEGER NOT NULL,
        task_id BIGINT NOT NULL,
        image_url TEXT NOT NULL,
        item_id TEXT,
        annotator TEXT,
        label TEXT,                     -- worn / not_worn / unusable; NULL when the annotation is not usable
        problem TEXT,                   -- why label is NULL (unknown choice, no choice, cancelled)
        created_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        lead_time DOUBLE,
        annotator_id BIGINT,            -- Label Studio's user id (completed_by); annotator is that user's e-mail
        PRIMARY KEY (project_key, annotation_id)
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        image_url TEXT PRIMARY KEY,     -- the resolved human label of an image, from the annotations of all
        item_id TEXT,                   -- projects (see labelling/labels.py)
        label TEXT NOT NULL,            -- worn / not_worn / unusable (unusable is kept, never trained on)
        annotator TEXT,                 -- who labelled: the user's e-mail (the demo's simulated annotator is its own user)
        annotated_at TIMESTAMPTZ NOT NULL,
        task_id BIGINT NOT NULL,
        annotation_id BIGINT NOT NULL,
        lead_time DOUBLE,
        annotations INTEGER NOT NULL,   -- usable annotations behind the label
        agreement DOUBLE NOT NULL,      -- share of annotators who chose the winning label
        project_key INTEGER,            -- the project of the annotation standing for the label
        annotator_id BIGINT             -- that user's Label Studio id (the annotation's completed_by)
    )""",
    # --- dataset (the image set) ---
    """CREATE TABLE IF NOT EXISTS image_rejects (
        image_url TEXT PRIMARY KEY,     -- a labelled image the image set could not use (defs/dataset/build.py)
        label TEXT,                     -- the label it would have been filed under
        reason TEXT NOT NULL,           -- "<code>: <detail>"; code = download, empty, truncated, not_an_image, too_large
        rejected_at TIMESTAMPTZ NOT NULL
    )""",
)
# Files made before a column or table existed get it here (every statement idempotent, run after SCHEMA).
MIGRATIONS: tuple[str, ...] = (
    "ALTER TABLE brands ADD COLUMN IF NOT EXISTS path TEXT",
    "ALTER TABLE brands ADD COLUMN IF NOT EXISTS delisted_at TIMESTAMPTZ",
    "ALTER TABLE brands ADD COLUMN IF NOT EXISTS gone_at TIMESTAMPTZ",
    "ALTER TABLE brands ADD COLUMN IF NOT EXISTS listing_status TEXT",
    "ALTER TABLE brands ADD COLUMN IF NOT EXISTS listing_checked_at TIMESTAMPTZ",
    "ALTER TABLE annotations ADD COLUMN IF NOT EXISTS annotator_id BIGINT",
    "ALTER TABLE labels ADD COLUMN IF NOT EXISTS annotator_id BIGINT",
    "ALTER TABLE pieces ADD COLUMN IF NOT EXISTS category TEXT",
    "ALTER TABLE pieces ADD COLUMN IF NOT EXISTS category_path TEXT",
    # images.item_id held one piece per image; each becomes that piece's link, once (piece_images empty).
    """INSERT INTO piece_images (item_id, image_url, position, is_packshot, first_seen, last_seen)
       SELECT item_id, image_url, position, is_packshot, first_seen, last_seen FROM images
       WHERE NOT EXISTS (SELECT 1 FROM piece_images)
       ON CONFLICT DO NOTHING""",
)
# No secondary indexes: DuckDB turns an UPDATE of an indexed column into delete + insert (100k-piece upserts
# went from 0.1 s to 6 s with an index on pieces.brand_slug), and its zone maps already serve per-brand scans.

PIECE_COLUMNS = ("item_id", "sku", "name", "brand", "brand_slug", "price", "currency", "colour", "url", "category", "category_path")
# Not every crawl sees a piece's category (fetched alone, the listing not a category one, a page without its
# trail): a crawl that says none keeps the one a crawl before found.
PIECE_KEEP_IF_NULL = ("category", "category_path")
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
    for statement in MIGRATIONS:
        con.execute(statement)
    migrate_labelling(con)


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


# --- the one upsert ---------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifier(name: str) -> str:
    """A table or column name for SQL text: a plain name from code, quoted; anything else is refused."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain table or column name: {name!r}")
    return f'"{name}"'


def primary_key(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, ...]:
    """The table's primary key columns, in table order."""
    return tuple(row[0] for row in con.execute("SELECT name FROM pragma_table_info(?) WHERE pk ORDER BY cid", [table]).fetchall())


def upsert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: pd.DataFrame | Iterable[Mapping],
    key: Sequence[str],
    *,
    keep: Sequence[str] = (),
    keep_if_null: Sequence[str] = (),
    insert_only: bool = False,
    deduplicated: bool = False,
) -> int:
    """Insert `rows` into `table`; a row whose key is stored already updates that row. Returns the rows written.

    rows: a DataFrame, or mappings, whose names are columns of the table. One statement over the registered frame
    (INSERT ... BY NAME): values never enter SQL text, and names are checked to be plain identifiers. A column the
    rows do not carry is never touched (images.flag_model, brands.gone_at keep theirs).

    On a conflict every column the rows carry is replaced (INSERT OR REPLACE), except:
      keep:          written when the row is new, then kept (first_seen);
      keep_if_null:  a NULL in the rows keeps the stored value (coalesce: a brand row without its path);
      insert_only:   the stored row stays as it is (INSERT OR IGNORE).
    key: the table's primary key (checked against the table). Rows sharing a key are cut to the last one (with
    insert_only, the first), as if upserted one by one: given such a batch, DuckDB 2.0 silently keeps the first it
    meets (1.x refused it). deduplicated=True: the caller has cut them already (upsert_items does, for its own
    counts) and the pass, ~0.25 s per 300k rows, is skipped.
    No replaced column may be in an index other than the key (DuckDB turns such an update into delete + insert,
    and older versions refused it): the schema has no secondary index (see SCHEMA).
    """
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    key, keep, keep_if_null = tuple(key), tuple(keep), tuple(keep_if_null)
    columns = [str(column) for column in frame.columns]
    name, view = _identifier(table), _identifier(f"upserting_{table}")
    quoted = {column: _identifier(column) for column in (*columns, *key, *keep, *keep_if_null)}
    stored_key = primary_key(con, table)
    if sorted(key) != sorted(stored_key):
        raise ValueError(f"{key} is not the primary key of {table}: {stored_key}")
    if insert_only and (keep or keep_if_null):
        raise ValueError("insert_only keeps every column already: keep / keep_if_null say nothing more")
    if frame.empty:
        return 0
    if not set(key) <= set(columns) or not set(keep + keep_if_null) <= set(columns) - set(key):
        raise ValueError(f"key {key}, keep {keep} and keep_if_null {keep_if_null} must be columns of the rows {columns}")
    if not deduplicated:
        frame = frame.drop_duplicates(list(key), keep="first" if insert_only else "last")
    if insert_only:
        statement = f"INSERT OR IGNORE INTO {name} BY NAME SELECT * FROM {view}"
    elif not (keep or keep_if_null):
        statement = f"INSERT OR REPLACE INTO {name} BY NAME SELECT * FROM {view}"
    else:
        updates = [
            f"{quoted[column]} = coalesce(excluded.{quoted[column]}, {name}.{quoted[column]})"
            if column in keep_if_null
            else f"{quoted[column]} = excluded.{quoted[column]}"
            for column in columns
            if column not in key and column not in keep
        ]
        action = f"UPDATE SET {', '.join(updates)}" if updates else "NOTHING"
        statement = (f"INSERT INTO {name} BY NAME SELECT * FROM {view} "
                     f"ON CONFLICT ({', '.join(quoted[column] for column in key)}) DO {action}")
    con.register(f"upserting_{table}", frame)
    try:
        return int(con.execute(statement).fetchall()[0][0])  # fetchall: a half-read result blocks register()
    finally:
        con.unregister(f"upserting_{table}")


# --- brands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrandUpsert:
    total: int
    new: list[str]


def path_from_url(url: str) -> str | None:
    """The brand path segment of a listing URL ('https://www.zalando.de/bj%C3%B6rn-borg/' -> 'björn-borg')."""
    segments = [segment for segment in urlsplit(url or "").path.split("/") if segment]
    return unquote(segments[-1]) if segments else None


def upsert_brands(con: duckdb.DuckDBPyConnection, brands: Iterable[dict], seen_at: datetime | None = None) -> BrandUpsert:
    """Insert new brands, refresh names/URLs of known ones. Rows: {slug, name, url[, path]}.

    `path` (the shop's brand path, the brand's identity) defaults to the URL's last segment. A brand seen
    here is listed: its delisted_at is cleared (mark_delisted sets it for the brands an index left out).
    """
    seen_at = seen_at or utcnow()
    frame = pd.DataFrame(list(brands), columns=["slug", "name", "url", "path"]).drop_duplicates("slug", keep="last")
    frame["path"] = [path if isinstance(path, str) and path else path_from_url(url) for path, url in zip(frame["path"], frame["url"])]
    frame["path"] = frame["path"].astype("object")
    frame["first_seen"] = frame["last_seen"] = seen_at
    frame["delisted_at"] = None  # listed again
    with transaction(con):
        con.register("incoming_brands", frame)
        try:
            new = [
                row[0]
                for row in con.execute(
                    "SELECT slug FROM incoming_brands WHERE slug NOT IN (SELECT slug FROM brands) ORDER BY slug"
                ).fetchall()
            ]
        finally:
            con.unregister("incoming_brands")
        upsert(con, "brands", frame, key=["slug"], keep=["first_seen"], keep_if_null=["path"])
    return BrandUpsert(total=len(frame), new=new)


def brand_paths(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """{shop brand path: slug} of every known brand (rows from before `path` existed: from their URL)."""
    paths: dict[str, str] = {}
    for slug, path, url in con.execute("SELECT slug, path, url FROM brands ORDER BY first_seen, slug").fetchall():
        paths.setdefault(path or path_from_url(url) or slug, slug)
    return paths


def mark_delisted(con: duckdb.DuckDBPyConnection, listed_slugs: Sequence[str], at: datetime) -> list[str]:
    """Brands the index no longer lists get delisted_at (kept, never deleted); returns the newly delisted slugs."""
    rows = con.execute(
        """UPDATE brands SET delisted_at = ? WHERE delisted_at IS NULL AND NOT list_contains(?, slug)
           RETURNING slug""",
        [at, list(listed_slugs)],
    ).fetchall()
    return sorted(row[0] for row in rows)


def brand_slugs(con: duckdb.DuckDBPyConnection) -> list[str]:
    """All known brand slugs in the order they were first seen (so new ones come last)."""
    return [row[0] for row in con.execute("SELECT slug FROM brands ORDER BY first_seen, slug").fetchall()]


def brand_urls(con: duckdb.DuckDBPyConnection, slugs: Sequence[str]) -> dict[str, str]:
    rows = con.execute("SELECT slug, url FROM brands WHERE list_contains(?, slug)", [list(slugs)]).fetchall()
    return dict(rows)


def brand_listing_paths(con: duckdb.DuckDBPyConnection, slugs: Sequence[str]) -> dict[str, str]:
    """{slug: shop brand path} for the given known slugs (what the spider requests as /{path}/)."""
    rows = con.execute("SELECT slug, path, url FROM brands WHERE list_contains(?, slug)", [list(slugs)]).fetchall()
    return {slug: path or path_from_url(url) or slug for slug, path, url in rows}


GONE_STATUSES = ("http_404", "http_410")


def record_listing_status(con: duckdb.DuckDBPyConnection, statuses: dict[str, str], at: datetime) -> None:
    """How each brand's listing answered a crawl. `ok` moves last_crawled and clears gone_at; 404/410 set
    gone_at (kept from the first time); anything else (refused, 5xx, robots.txt) only records the status."""
    frame = pd.DataFrame({"slug": list(statuses), "status": [str(status) for status in statuses.values()]}, dtype="object")
    with transaction(con):
        con.register("incoming_statuses", frame)
        try:
            con.execute(
                """UPDATE brands SET listing_status = s.status, listing_checked_at = ?,
                       last_crawled = CASE WHEN s.status = 'ok' THEN ? ELSE brands.last_crawled END,
                       gone_at = CASE WHEN s.status = 'ok' THEN NULL
                                      WHEN list_contains(?, s.status) THEN coalesce(brands.gone_at, ?) ELSE brands.gone_at END
                   FROM incoming_statuses s WHERE brands.slug = s.slug""",
                [at, at, list(GONE_STATUSES), at],
            )
        finally:
            con.unregister("incoming_statuses")


def brand_crawl_times(con: duckdb.DuckDBPyConnection, slugs: Sequence[str]) -> list[dict]:
    """When each of the given brands was found and last crawled (listing answered ok), and whether the shop
    still lists it (delisted_at) and its listing still answers (gone_at); slugs DuckDB does not know are left out."""
    rows = con.execute(
        """SELECT slug, name, first_seen, last_crawled, delisted_at, gone_at FROM brands
           WHERE list_contains(?, slug) ORDER BY slug""",
        [list(slugs)],
    ).fetchall()
    return [dict(zip(("slug", "name", "first_seen", "last_crawled", "delisted_at", "gone_at"), row)) for row in rows]


# --- pieces, images, prices ------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlUpsert:
    pieces: int
    pieces_new: int
    images: int
    images_new: int
    price_changes: int
    skipped: int
    image_links: int = 0        # (piece, image) pairs: an image two pieces show counts for both
    image_links_new: int = 0

    def as_metadata(self) -> dict[str, int]:
        return asdict(self)


def _frames(items: Iterable[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """Split crawled items into pieces, images (one row per URL: the smallest item_id showing it, so the
    choice does not depend on crawl order) and piece-image links (every piece of a shared image); count
    items too broken to store."""
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
    for column in PIECE_KEEP_IF_NULL:
        # Text or NULL, whatever an older or odd feed holds (a feed from before the column has no key at all).
        piece_frame[column] = piece_frame[column].map(lambda value: (value.strip() or None) if isinstance(value, str) else None).astype("object")
    link_frame = pd.DataFrame(images, columns=list(IMAGE_COLUMNS)).drop_duplicates(["item_id", "image_url"], keep="first")
    link_frame["position"] = link_frame["position"].astype("int32")
    link_frame["is_packshot"] = link_frame["is_packshot"].astype("bool")
    image_frame = link_frame.sort_values(["image_url", "item_id"], kind="stable").drop_duplicates("image_url", keep="first")
    return piece_frame, image_frame, link_frame.reset_index(drop=True), skipped


def upsert_items(con: duckdb.DuckDBPyConnection, items: Iterable[dict], seen_at: datetime | None = None,
                 pieces: bool = True, images: bool = True) -> CrawlUpsert:
    """Store crawled products and their images in one transaction.

    Re-running with the same items changes no row count; a changed price appends to price_history.
    flag_model is never touched here: it belongs to the model. `pieces=False` leaves pieces and price_history
    alone, `images=False` images and piece_images (a run that materializes only one of the two assets); the
    counts are the same either way.
    """
    seen_at = seen_at or utcnow()
    piece_frame, image_frame, link_frame, skipped = _frames(items)
    for frame in (piece_frame, image_frame, link_frame):
        frame["first_seen"] = frame["last_seen"] = seen_at  # first_seen stays as it is for a known row
    with transaction(con):
        con.register("incoming_pieces", piece_frame)
        con.register("incoming_images", image_frame)
        con.register("incoming_links", link_frame)
        try:
            pieces_new = con.execute(
                "SELECT count(*) FROM incoming_pieces WHERE item_id NOT IN (SELECT item_id FROM pieces)"
            ).fetchone()[0]
            images_new = con.execute(
                "SELECT count(*) FROM incoming_images WHERE image_url NOT IN (SELECT image_url FROM images)"
            ).fetchone()[0]
            links_new = con.execute(
                """SELECT count(*) FROM incoming_links i
                   WHERE NOT EXISTS (SELECT 1 FROM piece_images l WHERE l.item_id = i.item_id AND l.image_url = i.image_url)"""
            ).fetchone()[0]
            # A price row when a piece is new or its price/currency moved; before the pieces upsert so the
            # comparison sees the old price. Not upsert(): the rows come from a join, and a row already stored for
            # this (item_id, seen_at), a re-run of the same crawl, is left alone.
            changed = """FROM incoming_pieces i LEFT JOIN pieces p USING (item_id)
                   WHERE p.item_id IS NULL OR p.price IS DISTINCT FROM i.price OR p.currency IS DISTINCT FROM i.currency"""
            if pieces:
                price_changes = con.execute(
                    f"""INSERT INTO price_history (item_id, price, currency, seen_at)
                       SELECT i.item_id, i.price, i.currency, i.last_seen {changed}
                       ON CONFLICT DO NOTHING"""
                ).fetchone()[0]
                # _frames cut the rows sharing a key (their counts above need that): upsert() need not again.
                upsert(con, "pieces", piece_frame, key=["item_id"], keep=["first_seen"], keep_if_null=PIECE_KEEP_IF_NULL,
                       deduplicated=True)
            else:
                price_changes = con.execute(f"SELECT count(*) {changed}").fetchone()[0]
            if images:
                # Not upsert(): images.item_id is the smallest item_id that showed the image, whichever crawl came
                # first, and position / is_packshot follow that piece; only last_seen is simply replaced.
                con.execute(
                    """INSERT INTO images (image_url, item_id, position, is_packshot, first_seen, last_seen)
                       SELECT image_url, item_id, position, is_packshot, first_seen, last_seen FROM incoming_images
                       ON CONFLICT (image_url) DO UPDATE SET
                           item_id = least(images.item_id, excluded.item_id),
                           position = CASE WHEN excluded.item_id <= images.item_id THEN excluded.position ELSE images.position END,
                           is_packshot = CASE WHEN excluded.item_id <= images.item_id THEN excluded.is_packshot ELSE images.is_packshot END,
                           last_seen = excluded.last_seen"""
                )
                upsert(con, "piece_images", link_frame, key=["item_id", "image_url"], keep=["first_seen"], deduplicated=True)
        finally:
            con.unregister("incoming_pieces")
            con.unregister("incoming_images")
            con.unregister("incoming_links")
    return CrawlUpsert(
        pieces=len(piece_frame),
        pieces_new=int(pieces_new),
        images=len(image_frame),
        images_new=int(images_new),
        price_changes=int(price_changes),
        skipped=skipped,
        image_links=len(link_frame),
        image_links_new=int(links_new),
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
    row = {
        "crawl_id": crawl_id,
        "spider": spider,
        "brand_slugs": list(brand_slugs),
        "started_at": started_at,
        "finished_at": finished_at,
        "pages": stats.get("response_received_count"),
        "items": stats.get("item_scraped_count"),
        "dropped": stats.get("item_dropped_count", 0),
        "stats": json.dumps(stats, default=str),
    }
    upsert(con, "crawl_log", [row], key=["crawl_id"])


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    row = con.execute(
        """SELECT (SELECT count(*) FROM brands), (SELECT count(*) FROM pieces), (SELECT count(*) FROM price_history),
                  (SELECT count(*) FROM images), (SELECT count(*) FROM crawl_log), (SELECT count(*) FROM label_tasks),
                  (SELECT count(*) FROM labels), (SELECT count(*) FROM predictions)"""
    ).fetchone()
    return dict(zip(("brands", "pieces", "price_history", "images", "crawl_log", "label_tasks", "labels", "predictions"), row))


# --- labelling: migration of files made before label_projects ------------------------------------------


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            """SELECT column_name FROM information_schema.columns
               WHERE table_catalog = current_database() AND table_schema = current_schema() AND table_name = ?
               ORDER BY ordinal_position""",
            [table],
        ).fetchall()
    ]


def _create_statement(table: str) -> str:
    return next(statement for statement in SCHEMA if statement.startswith(f"CREATE TABLE IF NOT EXISTS {table} ("))


LABEL_TASK_COLUMNS = "task_id, image_url, project_id, item_id, brand_slug, pre_label, pre_score, pre_model_version, created_at"
ANNOTATION_TABLE_COLUMNS = (
    "annotation_id, project_id, task_id, image_url, item_id, annotator, label, problem, created_at, updated_at, lead_time"
)


def migrate_labelling(con: duckdb.DuckDBPyConnection) -> None:
    """Bring labelling tables keyed by Label Studio's ids alone (label_tasks by image, annotations by annotation id)
    to project keys. Idempotent; one transaction.

    Each Label Studio project id found becomes a label_projects row without created_at. The first run that meets
    a project with that id, created before the row's first task or annotation, claims it (fills created_at), so
    the same project is not pulled twice; a project with that id created later (a re-created project on a fresh
    server) is a new project and leaves the old rows alone.
    """
    old_tasks = "project_key" not in table_columns(con, "label_tasks")
    old_annotations = "project_key" not in table_columns(con, "annotations")
    old_labels = "project_key" not in table_columns(con, "labels")
    if not (old_tasks or old_annotations or old_labels):
        return
    with transaction(con):
        sources = []
        if old_tasks:
            sources.append("SELECT project_id, created_at AS seen_at FROM label_tasks")
        if old_annotations:
            sources.append("SELECT project_id, coalesce(created_at, updated_at) AS seen_at FROM annotations")
        if sources:
            # The union names only fixed table names; no value travels inside the SQL text.
            con.execute(
                f"""INSERT INTO label_projects (project_key, project_id, first_seen, last_seen, is_current)
                    SELECT (SELECT coalesce(max(project_key), 0) FROM label_projects) + row_number() OVER (ORDER BY project_id),
                           project_id, min(seen_at), max(seen_at), row_number() OVER (ORDER BY max(seen_at) DESC, project_id DESC) = 1
                    FROM ({" UNION ALL ".join(sources)})
                    GROUP BY project_id
                    HAVING project_id NOT IN (SELECT project_id FROM label_projects WHERE created_at IS NULL)"""
            )
        for table, columns, old in (("label_tasks", LABEL_TASK_COLUMNS, old_tasks), ("annotations", ANNOTATION_TABLE_COLUMNS, old_annotations)):
            if not old:
                continue
            con.execute(f"ALTER TABLE {table} RENAME TO {table}_before_projects")
            con.execute(_create_statement(table))
            selected = ", ".join(f"old.{column}" for column in columns.split(", "))
            con.execute(
                f"""INSERT INTO {table} (project_key, {columns})
                    SELECT p.project_key, {selected} FROM {table}_before_projects old
                    JOIN label_projects p ON p.project_id = old.project_id AND p.created_at IS NULL
                    ON CONFLICT DO NOTHING"""
            )
            con.execute(f"DROP TABLE {table}_before_projects")
        if old_labels:
            con.execute("ALTER TABLE labels ADD COLUMN project_key INTEGER")
            con.execute(
                """UPDATE labels SET project_key = a.project_key FROM annotations a
                   WHERE a.annotation_id = labels.annotation_id AND a.task_id = labels.task_id"""
            )


class DuckDBResource(dg.ConfigurableResource):
    """The platform's DuckDB file. Writers wait for the lock instead of failing (see storage.connect)."""

    path: str  # FIC_DUCKDB
    lock_wait_seconds: float = 120.0

    @contextmanager
    def connect(self, read_only: bool = False, wait_seconds: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """wait_seconds: how long to wait for another process's lock (default lock_wait_seconds). Sensors pass a
        short wait: a tick must not block the daemon while a run writes; it skips and tries again next tick."""
        wait = self.lock_wait_seconds if wait_seconds is None else wait_seconds
        with connect(self.path, read_only=read_only, wait_seconds=wait) as con:
            yield con
