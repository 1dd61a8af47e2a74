"""The analytics snapshot: a read-only copy of what analysts read, as Parquet, replaced atomically.

Readers (the static report, the dashboard, a notebook) never open the live DuckDB file: DuckDB lets one process
write it, and a read-only open fails while the platform writes. `analytics_snapshot` reads DuckDB once (in the
`duckdb` pool, so no writer runs meanwhile) and writes this folder; `open_snapshot` reads it.

Layout of the analytics folder (FIC_ANALYTICS_DIR, default $FIC_DATA_DIR/analytics):

    CURRENT                         the name of the current snapshot, one line (replaced with os.replace)
    snapshots/<version>/            one complete snapshot; <version> = UTC time written + random suffix
        brands.parquet  pieces.parquet  images.parquet  price_history.parquet  colours.parquet
        brand_summary.parquet       per-brand numbers (summary.brand_overview of this very snapshot)
        model.json                  the production model: version, CV F1 and spread, labels used, confusion matrix
        manifest.json               written last: version, created_at, tables with their row counts and columns
    snapshots/.tmp-<version>/       a snapshot being written (never read; removed if a writer died)

A new snapshot is written into `.tmp-<version>/`, renamed to `<version>/` when complete, and only then does
CURRENT name it (a temp file renamed over CURRENT: atomic on POSIX). A reader resolves CURRENT once and reads that
one directory, so it sees the old snapshot or the new one, never a mix. A snapshot that is no longer current is
deleted after a grace period (GRACE_SECONDS after it was replaced), but never while a reader has it open:
`open_snapshot` holds a shared lock (flock) on its manifest until closed, and `prune` skips a snapshot it cannot
lock exclusively. A reader that resolved CURRENT just before a deletion tries again with the new CURRENT. Opening is
cheap (views over the Parquet files: the first page reads `brand_summary` only); `open_snapshot(in_memory=True)`
copies every table into memory instead and holds no lock. A long-lived reader (the dashboard) should reopen when
`current_version(root)` moves, so old snapshots can go.

Tables and columns (TABLES has the same, for code):

    brands         slug, name, url, listed (neither delisted nor gone), first_seen, last_crawled, delisted_at, gone_at
    pieces         item_id, sku, brand_slug, brand_name, name, price, currency, colour (the shop's own word),
                   colour_family (colours.FAMILIES: black, navy, grey, ...; NULL without a colour), url, first_seen,
                   last_seen, category (the shop's first category level: its breadcrumb, else the listing URL's
                   category; NULL when it gives none), category_path (every level, " > "-joined, brand left out)
    images         image_url, item_id, brand_slug, position, is_packshot (the shop's flag), thumbnail_url (the
                   image at THUMBNAIL_WIDTH px where the URL allows; NULL when the URL is not http(s)), label
                   (worn / not_worn / error; NULL = not predicted yet), score (P(worn)), certainty (|score − 0.5|·2),
                   error (why label is error), model_version, predicted_at, human_label (worn / not_worn / unusable
                   from Label Studio, else NULL), label_studio_task_url (the image's open Label Studio task, else NULL)
    price_history  item_id, brand_slug, price, currency, seen_at (a row when a piece is new or its price moved)
    colours        brand_slug, colour_family, pieces, shop_words (the shop's words behind the family, most used first)
    brand_summary  summary.OVERVIEW_COLUMNS: slug, name, listed, pieces, images, predicted, errors, worn,
                   worn_share_raw, worn_share (corrected for the model's error), worn_share_low, worn_share_high
                   (95 % interval), worn_share_corrected, price_min/p25/median/p75/max, priced_pieces, currency,
                   top_colours, packshot_flags, packshot_not_worn, packshot_agreement, model_versions,
                   top_categories (the brand's TOP_CATEGORIES most common categories with their pieces); per category
                   the dashboard recomputes it: summary.brand_overview(snap, categories)
    model.json     {"version", "promoted_at", "arch", "trained_at", "threshold", "cv": {"f1", "f1_std", "f1_min",
                   "f1_max", "folds", "repeats", "n", "accuracy", "precision", "recall", "roc_auc"},
                   "confusion_matrix": {"tp", "fp", "tn", "fn"}, "sensitivity", "specificity", "labels_used"
                   ({label: images the model was trained on}), "human_labels" ({label: images in DuckDB `labels`}),
                   "predictions_by_version"}; {"version": null, "message": ...} without a production model

Reading:

    with open_snapshot() as snap:              # or open_snapshot("data/analytics"), or a snapshots/<version> dir;
                                               # in_memory=True for a copy that needs no files
        snap.version, snap.created_at, snap.model          # model.json as a dict
        snap.table("brand_summary")                        # a pandas DataFrame
        snap.sql("SELECT ... FROM images WHERE brand_slug = ?", [slug])   # DuckDB SQL over the tables, in memory
    summary.brand_overview(snap), summary.brand_examples(snap, slug), ...  (fic_assets.defs.analytics.summary)
    parquet_bytes(frame)                       # a DataFrame as Parquet bytes (a download button)
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from fic_assets.defs.analytics.colours import colour_families
from fic_assets.platform import settings

CURRENT = "CURRENT"
SNAPSHOTS = "snapshots"
MANIFEST = "manifest.json"
MODEL = "model.json"
TEMP_PREFIX = ".tmp-"
FORMAT = 1
GRACE_SECONDS = 600.0  # a replaced snapshot stays this long for readers that resolved CURRENT before the switch
THUMBNAIL_WIDTH = 300

TABLES: dict[str, tuple[str, ...]] = {
    "brands": ("slug", "name", "url", "listed", "first_seen", "last_crawled", "delisted_at", "gone_at"),
    "pieces": ("item_id", "sku", "brand_slug", "brand_name", "name", "price", "currency", "colour", "colour_family",
               "url", "first_seen", "last_seen", "category", "category_path"),
    "images": ("image_url", "item_id", "brand_slug", "position", "is_packshot", "thumbnail_url", "label", "score",
               "certainty", "error", "model_version", "predicted_at", "human_label", "label_studio_task_url"),
    "price_history": ("item_id", "brand_slug", "price", "currency", "seen_at"),
    "colours": ("brand_slug", "colour_family", "pieces", "shop_words"),
    "brand_summary": (),  # summary.OVERVIEW_COLUMNS (the manifest lists them)
}

_QUERIES: dict[str, str] = {
    "brands": """SELECT slug, name, url, (delisted_at IS NULL AND gone_at IS NULL) AS listed, first_seen, last_crawled,
                        delisted_at, gone_at FROM brands ORDER BY slug""",
    "pieces": """SELECT p.item_id, p.sku, p.brand_slug, coalesce(b.name, p.brand) AS brand_name, p.name, p.price,
                        p.currency, p.colour, c.colour_family, p.url, p.first_seen, p.last_seen, p.category,
                        p.category_path
                 FROM pieces p LEFT JOIN brands b ON b.slug = p.brand_slug
                 LEFT JOIN snapshot_colour_families c ON c.colour = p.colour""",
    # Images belong to the brand of their piece (images.item_id), as the predictions and the report count them.
    # No ORDER BY: sorting 600k rows was a third of the snapshot's time, and readers filter by brand anyway.
    "images": """SELECT i.image_url, i.item_id, p.brand_slug, i.position, i.is_packshot,
                        CASE WHEN regexp_matches(i.image_url, ?) THEN regexp_replace(i.image_url, ?, ?) END AS thumbnail_url,
                        pr.label, pr.score, abs(pr.score - 0.5) * 2 AS certainty, pr.error, pr.model_version,
                        pr.predicted_at, l.label AS human_label, t.label_studio_task_url
                 FROM images i JOIN pieces p ON p.item_id = i.item_id
                 LEFT JOIN predictions pr ON pr.image_url = i.image_url
                 LEFT JOIN labels l ON l.image_url = i.image_url
                 LEFT JOIN (SELECT t.image_url, min(rtrim(lp.ls_url, '/') || '/projects/' || t.project_id || '/data?task='
                                                   || t.task_id) AS label_studio_task_url
                            FROM label_tasks t JOIN label_projects lp ON lp.project_key = t.project_key
                            WHERE t.retired_at IS NULL AND lp.ls_url IS NOT NULL GROUP BY t.image_url) t
                   ON t.image_url = i.image_url""",
    "price_history": """SELECT h.item_id, p.brand_slug, h.price, h.currency, h.seen_at
                        FROM price_history h JOIN pieces p ON p.item_id = h.item_id""",
}
# An http(s) URL without blanks; the shop's (and the demo shop's) imwidth parameter picks the served width.
_THUMBNAIL_PARAMETERS = [r"^https?://\S+$", r"([?&]imwidth=)[0-9]+", rf"\1{THUMBNAIL_WIDTH}"]


class SnapshotNotFound(FileNotFoundError):
    """No snapshot at the path given; the message says how to make one."""


class SnapshotSourceError(RuntimeError):
    """The warehouse cannot be snapshotted (missing tables); the message says what to do."""


def analytics_dir() -> Path:
    return Path(settings.get("FIC_ANALYTICS_DIR"))


# --- the model ---------------------------------------------------------------------------------------------


def model_info(con: duckdb.DuckDBPyConnection | None = None, models_root: Path | None = None) -> dict:
    """model.json's content: the production model's version, cross-validated metrics and confusion matrix (from its
    card), the labels it was trained on, and (with con) the human labels and predictions per model version."""
    from fic_assets.defs.model import artifact

    info: dict = {"version": None}
    pointer = artifact.production(models_root)
    if pointer is None:
        info["message"] = str(artifact.NoProductionModel(models_root or artifact.models_dir()))
    else:
        try:
            card = artifact.read_card(pointer["path"])
        except (OSError, ValueError, KeyError):
            card = {}  # the model dir moved away: the pointer's own metrics are all there is
        metrics = {**(pointer.get("metrics") or {}), **(card.get("metrics") or {})}
        info.update({
            "version": pointer["version"],
            "promoted_at": pointer.get("promoted_at"),
            "arch": card.get("arch"),
            "trained_at": card.get("trained_at"),
            "threshold": card.get("threshold"),
            "cv": {
                "f1": metrics.get("f1"), "f1_std": metrics.get("f1_std"), "f1_min": metrics.get("f1_min"),
                "f1_max": metrics.get("f1_max"), "folds": metrics.get("cv_folds"), "repeats": metrics.get("cv_repeats"),
                "n": metrics.get("n"), "accuracy": metrics.get("accuracy"), "precision": metrics.get("precision"),
                "recall": metrics.get("recall"), "roc_auc": metrics.get("roc_auc"),
                "evaluated_on": metrics.get("evaluated_on"),
            },
            "labels_used": card.get("class_counts_train") or {},
        })
        if all(key in metrics for key in ("tp", "fp", "tn", "fn")):
            matrix = {key: int(metrics[key]) for key in ("tp", "fp", "tn", "fn")}
            info["confusion_matrix"] = matrix
            positives, negatives = matrix["tp"] + matrix["fn"], matrix["tn"] + matrix["fp"]
            info["sensitivity"] = matrix["tp"] / positives if positives else None
            info["specificity"] = matrix["tn"] / negatives if negatives else None
        else:
            info["confusion_matrix"] = None
    if con is not None:
        info["human_labels"] = dict(con.execute("SELECT label, count(*) FROM labels GROUP BY label ORDER BY label").fetchall())
        info["predictions_by_version"] = dict(con.execute(
            "SELECT model_version, count(*) FROM predictions GROUP BY model_version ORDER BY model_version").fetchall())
    return info


# --- writing -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotWrite:
    path: Path            # snapshots/<version>/
    version: str
    rows: dict[str, int]  # table -> rows
    seconds: float
    removed: list[str] = field(default_factory=list)  # older snapshots deleted after their grace period


def _version(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def _version_time(name: str) -> datetime | None:
    try:
        return datetime.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _check_source(con: duckdb.DuckDBPyConnection) -> None:
    tables = {row[0] for row in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()").fetchall()}
    needed = {"brands", "pieces", "images", "price_history", "predictions", "labels", "label_tasks", "label_projects"}
    missing = sorted(needed - tables)
    if missing:
        raise SnapshotSourceError(
            f"the DuckDB file has no table {', '.join(missing)}: it was not made by the platform, or by a version "
            "before that table existed; materialize `brands` once (its writer adds every table) and try again")


def _copy(con: duckdb.DuckDBPyConnection, query: str, params: list, target: Path) -> int:
    con.execute(f"COPY ({query}) TO ? (FORMAT parquet, COMPRESSION zstd)", [*params, str(target)])
    return int(con.execute("SELECT count(*) FROM read_parquet(?)", [str(target)]).fetchone()[0])


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n", encoding="utf-8")


def _switch_current(root: Path, version: str) -> None:
    """CURRENT names `version`: a temp file flushed to disk, renamed over CURRENT (a reader sees one or the other)."""
    temp = root / f".{CURRENT}.{secrets.token_hex(4)}.tmp"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(version + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, root / CURRENT)


def current_version(root: Path) -> str | None:
    try:
        name = (Path(root) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def prune(root: Path, grace_seconds: float = GRACE_SECONDS, now: datetime | None = None) -> list[str]:
    """Delete snapshots replaced more than grace_seconds ago, and temp dirs of writers older than that (a writer that
    died). Never the current snapshot, nor one newer than it. Returns the names deleted."""
    root = Path(root)
    now = now or datetime.now(timezone.utc)
    folder = root / SNAPSHOTS
    if not folder.is_dir():
        return []
    current = current_version(root)
    names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(TEMP_PREFIX))
    removed = []
    for older, newer in zip(names, names[1:]):
        if current is None or older == current or older > current:
            continue
        replaced_at = _version_time(newer)
        if replaced_at is not None and (now - replaced_at).total_seconds() >= grace_seconds and _delete_unused(folder / older):
            removed.append(older)
    for entry in folder.iterdir():
        # A temp dir is named by the time its writer started; one older than the grace period belongs to a writer
        # that died (a snapshot takes seconds), never to the one running now (the duckdb pool runs one at a time).
        started_at = _version_time(entry.name[len(TEMP_PREFIX):]) if entry.name.startswith(TEMP_PREFIX) else None
        if started_at is not None and (now - started_at).total_seconds() > max(grace_seconds, 60.0):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _delete_unused(snapshot: Path) -> bool:
    """Delete a snapshot directory unless a reader holds its manifest's shared lock (open_snapshot)."""
    try:
        fd = os.open(snapshot / MANIFEST, os.O_RDONLY)
    except FileNotFoundError:
        shutil.rmtree(snapshot, ignore_errors=True)  # no manifest: never complete, no reader can use it
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # in use: the next prune tries again
        shutil.rmtree(snapshot, ignore_errors=True)  # while locked: a reader arriving now finds it gone and retries
        return True
    finally:
        os.close(fd)


def write_snapshot(con: duckdb.DuckDBPyConnection, root: str | Path | None = None, model: dict | None = None,
                   now: datetime | None = None, grace_seconds: float = GRACE_SECONDS) -> SnapshotWrite:
    """Write a new snapshot of the warehouse behind `con` (a read-only connection is enough) under root, make it
    current, prune old ones. model: model.json's content (default: model_info(con), the production model's)."""
    from fic_assets.defs.analytics import summary

    started = time.perf_counter()
    root = Path(root) if root is not None else analytics_dir()
    now = now or datetime.now(timezone.utc)
    _check_source(con)
    version = _version(now)
    folder = root / SNAPSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f"{TEMP_PREFIX}{version}"
    temp.mkdir()
    try:
        model = model_info(con) if model is None else model
        rows: dict[str, int] = {}
        words = [row[0] for row in con.execute("SELECT DISTINCT colour FROM pieces WHERE colour IS NOT NULL").fetchall()]
        mapping = pd.DataFrame({"colour": pd.Series(words, dtype=object),
                                "colour_family": pd.Series(colour_families(words), dtype=object)})
        con.register("snapshot_colour_families", mapping)
        try:
            con.execute("BEGIN TRANSACTION")  # one consistent view of the warehouse for every table
            try:
                for table, query in _QUERIES.items():
                    params = _THUMBNAIL_PARAMETERS if table == "images" else []
                    rows[table] = _copy(con, query, params, temp / f"{table}.parquet")
            finally:
                con.execute("ROLLBACK")  # read only: nothing to keep
        finally:
            con.unregister("snapshot_colour_families")
        _write_json(temp / MODEL, model)
        # The per-brand numbers, from exactly these tables, by the functions the report and the dashboard use.
        with Snapshot.load(temp, {"version": version, "created_at": now.isoformat(), "tables": {t: {} for t in rows}},
                           model, in_memory=False) as partial:
            derived = {"colours": summary.colour_counts(partial), "brand_summary": summary.brand_overview(partial)}
        writer = duckdb.connect()
        try:
            for table, frame in derived.items():
                writer.register("derived", frame)
                writer.execute("COPY (SELECT * FROM derived) TO ? (FORMAT parquet, COMPRESSION zstd)", [str(temp / f"{table}.parquet")])
                writer.unregister("derived")
                rows[table] = len(frame)
        finally:
            writer.close()
        manifest = {
            "format": FORMAT,
            "version": version,
            "created_at": now.isoformat(timespec="seconds"),
            "model_version": model.get("version"),
            "tables": {table: {"rows": rows[table], "file": f"{table}.parquet",
                               "columns": list(TABLES[table]) or list(summary.OVERVIEW_COLUMNS)} for table in TABLES},
        }
        _write_json(temp / MANIFEST, manifest)  # last: a directory with a manifest is complete
        target = folder / version
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _switch_current(root, version)
    removed = prune(root, grace_seconds, now)
    return SnapshotWrite(path=target, version=version, rows=rows, seconds=round(time.perf_counter() - started, 3),
                         removed=removed)


# --- reading -----------------------------------------------------------------------------------------------------


class Snapshot:
    """One snapshot, loaded into an in-memory DuckDB: nothing it reads can change or vanish while it is open."""

    def __init__(self, path: Path, manifest: dict, model: dict, con: duckdb.DuckDBPyConnection):
        self.path = path
        self.manifest = manifest
        self.model = model
        self.con = con
        self._lock_fd: int | None = None  # the shared lock that keeps prune away while this is open

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.manifest["created_at"])

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.manifest["tables"])

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.manifest["tables"]:
            raise KeyError(f"no table {name!r} in the snapshot; its tables: {', '.join(self.tables)}")
        return self.con.execute(f'SELECT * FROM "{name}"').df()  # name checked against the manifest's, from TABLES

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        return self.con.execute(query, params or []).df()

    def close(self) -> None:
        self.con.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def load(cls, path: Path, manifest: dict, model: dict, in_memory: bool = True) -> Snapshot:
        """in_memory: copy every table into memory (a reader keeps them whatever happens to the files); else views
        over the Parquet files (the writer's own look at the snapshot it is writing)."""
        con = duckdb.connect()
        kind = "TABLE" if in_memory else "VIEW"
        try:
            for table in manifest["tables"]:
                if table not in TABLES:
                    continue  # a newer writer's extra table: this reader does not know it
                source = str(path / f"{table}.parquet")  # the name is one of TABLES' (checked above)
                if in_memory:
                    con.execute(f'CREATE TABLE "{table}" AS SELECT * FROM read_parquet(?)', [source])
                else:  # DuckDB takes no parameters in a view: the relational API names the file without SQL text
                    con.read_parquet(source).create_view(table)
        except BaseException:
            con.close()
            raise
        manifest = {**manifest, "tables": {t: v for t, v in manifest["tables"].items() if t in TABLES}}
        return cls(path, manifest, model, con)


def _resolve(path: Path) -> Path:
    if (path / MANIFEST).is_file():
        return path
    version = current_version(path)
    if version is None:
        raise SnapshotNotFound(
            f"no analytics snapshot at {path} yet (no {CURRENT} file): materialize `analytics_snapshot` "
            "(e.g. `dg launch --job report_job`), or wait for the automation after the next predictions")
    return path / SNAPSHOTS / version


def open_snapshot(path: str | Path | None = None, in_memory: bool = False) -> Snapshot:
    """Open the current snapshot under an analytics folder (default FIC_ANALYTICS_DIR), or one snapshots/<version>
    directory. SnapshotNotFound (saying how to make one) when there is none.

    By default the tables are views over the snapshot's Parquet files, kept from deletion by a shared lock until
    close(); in_memory=True copies them into memory (slower to open, then independent of the files)."""
    root = Path(path) if path is not None else analytics_dir()
    for attempt in range(3):
        folder = _resolve(root)
        try:
            fd = os.open(folder / MANIFEST, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if (folder / MANIFEST).exists():  # not deleted between our open and our lock
                try:
                    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
                    model = json.loads((folder / MODEL).read_text(encoding="utf-8"))
                    snapshot = Snapshot.load(folder, manifest, model, in_memory=in_memory)
                except BaseException:
                    os.close(fd)
                    raise
                if in_memory:
                    os.close(fd)
                else:
                    snapshot._lock_fd = fd
                return snapshot
            os.close(fd)
        # Deleted between reading CURRENT and opening it (a reader slower than the grace period): CURRENT has moved.
        if attempt == 2 or folder == root:
            raise SnapshotNotFound(f"the analytics snapshot {folder} is incomplete or was deleted while being opened")
    raise AssertionError("unreachable")


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A DataFrame as Parquet (what a download button offers), written by DuckDB (no pyarrow needed)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fic-parquet-") as tmp:
        target = Path(tmp) / "table.parquet"
        con = duckdb.connect()
        try:
            con.register("frame", frame)
            con.execute("COPY (SELECT * FROM frame) TO ? (FORMAT parquet)", [str(target)])
        finally:
            con.close()
        return target.read_bytes()
