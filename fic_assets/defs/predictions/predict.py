"""Per-brand predictions of the production model: which images to score, and their idempotent write-back.

The original script built its SQL with f-strings (a brand like "Levi's" broke it) and wrote flag_model row by
row. Here a brand's images are read with one parameterized query, scored in a stream (fic_assets.defs.model.scoring, the one scoring path)
and written in chunks: each chunk upserts `predictions` and mirrors the label into images.flag_model (1 worn,
0 not worn, -1 error) in one transaction, so a crash loses at most the chunk in flight and a re-run adds no row.

Incremental: an image already predicted by the same model version is skipped; an image whose last attempt
was an error (a time-out, a 404 that may come back) is tried again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from fic_assets.platform import settings
from fic_assets.platform import warehouse
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.model.scoring import ERROR_LABEL, FetchOptions, ImageScore, Scorer, SourceReader, score_stream

PREDICTION_COLUMNS = ("image_url", "item_id", "brand_slug", "label", "score", "error", "model_version", "predicted_at")


def images_to_predict(con: duckdb.DuckDBPyConnection, slugs: Sequence[str], model_version: str) -> pd.DataFrame:
    """image_url, item_id, brand_slug of the brands' images that lack a usable prediction by model_version."""
    # The predictions side is filtered by brand too (predictions are written brand by brand): without it DuckDB
    # scans every prediction for every brand, and the cost grows with the catalogue (benchmarks/scale.py: 2.5x).
    return con.execute(
        """SELECT i.image_url, i.item_id, p.brand_slug
           FROM images i JOIN pieces p USING (item_id)
           LEFT JOIN (SELECT image_url, model_version, label FROM predictions WHERE list_contains(?, brand_slug)) r
             ON r.image_url = i.image_url
           WHERE list_contains(?, p.brand_slug)
             AND (r.image_url IS NULL OR r.model_version <> ? OR r.label = ?)
           ORDER BY p.brand_slug, i.image_url""",
        [list(slugs), list(slugs), model_version, ERROR_LABEL],
    ).df()


def image_counts(con: duckdb.DuckDBPyConnection, slugs: Sequence[str]) -> dict[str, int]:
    rows = con.execute(
        """SELECT p.brand_slug, count(*) FROM images i JOIN pieces p USING (item_id)
           WHERE list_contains(?, p.brand_slug) GROUP BY p.brand_slug""",
        [list(slugs)],
    ).fetchall()
    return dict(rows)


def write_predictions(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> None:
    """Upsert rows (PREDICTION_COLUMNS) and set images.flag_model to match, in one transaction."""
    frame = rows.loc[:, list(PREDICTION_COLUMNS)]
    with warehouse.transaction(con):
        warehouse.upsert(con, "predictions", frame, key=["image_url"])
        con.register("incoming_predictions", frame)
        try:
            # The original's readers look at images.flag_model: keep it in step with the latest prediction.
            con.execute(
                """UPDATE images SET flag_model = CASE n.label WHEN 'worn' THEN 1 WHEN 'not_worn' THEN 0 ELSE -1 END
                   FROM incoming_predictions n WHERE images.image_url = n.image_url"""
            )
        finally:
            con.unregister("incoming_predictions")


@dataclass
class BrandPredictions:
    images: int = 0  # the brand's images in DuckDB
    predicted: int = 0  # scored in this run
    unchanged: int = 0  # already predicted by this model version, skipped
    worn: int = 0
    not_worn: int = 0
    errors: Counter = field(default_factory=Counter)  # reason code -> images

    def as_metadata(self) -> dict:
        return {"images": self.images, "predicted": self.predicted, "unchanged": self.unchanged, "worn": self.worn,
                "not_worn": self.not_worn, "errors": sum(self.errors.values()), "error_reasons": dict(self.errors)}


@dataclass
class PredictionRun:
    model_version: str
    brands: dict[str, BrandPredictions]
    seconds: float = 0.0

    @property
    def predicted(self) -> int:
        return sum(brand.predicted for brand in self.brands.values())

    @property
    def errors(self) -> int:
        return sum(sum(brand.errors.values()) for brand in self.brands.values())

    @property
    def images_per_second(self) -> float:
        return self.predicted / self.seconds if self.seconds else 0.0


def error_reason(error: str) -> str:
    """The reason code of an error string ("download: HTTP 404" -> "download", "truncated: ..." -> "truncated")."""
    return error.split(":", 1)[0]


def predict_brands(
    connect: Callable[[], object],
    slugs: Sequence[str],
    model_dir: str | Path,
    cache: ImageCache,
    chunk_size: int | None = None,
    batch_size: int = 16,
    options: FetchOptions | None = None,
    log: Callable[[str], None] = lambda message: None,
    scorer: Scorer | None = None,
    now: Callable[[], datetime] = warehouse.utcnow,
) -> PredictionRun:
    """Predict every image of the brands that the model has not predicted yet; returns per-brand counts.

    connect() opens a DuckDB write connection (a context manager); it is opened briefly per chunk so that
    readers (sensors, a person's notebook) are not locked out while the images are being scored. chunk_size
    defaults to FIC_PREDICTION_CHUNK_SIZE. If the run is interrupted (SIGTERM, Dagster's terminate, Ctrl-C), the
    rows scored so far are written before the interruption goes on, and the downloads in flight are cancelled.
    """
    started = time.perf_counter()
    chunk_size = chunk_size or int(settings.get("FIC_PREDICTION_CHUNK_SIZE"))
    scorer = scorer or Scorer.load(model_dir)
    version = scorer.version
    with connect() as con:
        totals = image_counts(con, slugs)
        todo = images_to_predict(con, slugs, version)
    run = PredictionRun(version, {slug: BrandPredictions(images=totals.get(slug, 0)) for slug in slugs})
    for slug, brand in run.brands.items():
        brand.unchanged = brand.images - int((todo["brand_slug"] == slug).sum())
    log(f"model {version}: {len(todo)} image(s) to predict across {len(slugs)} brand(s)")
    meta = todo.set_index("image_url")
    pending: list[ImageScore] = []
    writing = False  # a failed write is not tried again on the way out

    def flush() -> None:
        nonlocal writing
        writing = True
        frame = pd.DataFrame(pending, columns=list(ImageScore._fields)).rename(columns={"source": "image_url"})
        frame["item_id"] = meta.loc[frame["image_url"], "item_id"].to_numpy()
        frame["brand_slug"] = meta.loc[frame["image_url"], "brand_slug"].to_numpy()
        frame["score"] = frame["score"].astype("float64")
        frame["model_version"] = version
        frame["predicted_at"] = now()
        with connect() as con:
            write_predictions(con, frame)
        for row in pending:
            brand = run.brands[meta.at[row.source, "brand_slug"]]
            brand.predicted += 1
            if row.error is not None:
                brand.errors[error_reason(row.error)] += 1
            elif row.label == "worn":
                brand.worn += 1
            else:
                brand.not_worn += 1
        log(f"stored {len(pending)} prediction(s); {sum(b.predicted for b in run.brands.values())}/{len(todo)} done")
        pending.clear()
        writing = False

    # closing(): an interruption while this loop (not the generator) runs must still stop the downloads at once.
    reader = SourceReader(cache, options)
    with closing(score_stream(todo["image_url"].tolist(), scorer, reader, batch_size=batch_size)) as scores:
        try:
            for row in scores:
                pending.append(row)
                if len(pending) >= chunk_size:
                    flush()
        except BaseException:
            if pending and not writing:
                log(f"interrupted: storing the {len(pending)} prediction(s) scored so far")
                flush()
            raise
    if pending:
        flush()
    run.seconds = time.perf_counter() - started
    return run


def brand_predictions_frame(con: duckdb.DuckDBPyConnection, slugs: Iterable[str]) -> pd.DataFrame:
    """The stored predictions of the brands (for tests, notebooks and the report)."""
    return con.execute(
        "SELECT * FROM predictions WHERE list_contains(?, brand_slug) ORDER BY brand_slug, image_url", [list(slugs)]
    ).df()


def prediction_labels(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(image_url, label) of every stored prediction, errors included."""
    return con.execute("SELECT image_url, label FROM predictions").fetchall()


def predictions_by_label(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many stored predictions each label has (worn, not_worn, error), by label."""
    return dict(con.execute("SELECT label, count(*) FROM predictions GROUP BY label ORDER BY label").fetchall())
