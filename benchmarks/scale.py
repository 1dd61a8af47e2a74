"""Scale: sensor ticks and per-brand queries on 1,000 brands, 200,000 pieces and 600,000 images.

Targets (deployment issue, reliability suite): every sensor tick < 1 s; one brand partition's predictions query
well under 1 s (< 100 ms warm).

What it does, all in a temp dir:
1. generates the catalogue into a fresh DuckDB through the platform's own writers: warehouse.upsert_brands,
   warehouse.upsert_items in crawl-sized batches (brand names with quotes, slashes and unicode, a skewed number
   of pieces per brand, 1-6 images per piece, a share of them packshots, prices with gaps, colours),
   predictions.write_predictions for most images in the predict job's chunk size (fake labels and scores: the
   benchmark is about queries, not the model) and labelling.labels.write_labels for some human labels;
2. builds a sqlite Dagster instance (what a local user has) with the brand partitions and the materialization
   events the sensors read: `brands`, per brand `pieces` / `image_urls` / `brand_predictions`, `production_model`,
   `brand_report`, `label_tasks` (optionally --history rounds of older per-brand events: weeks of re-crawls);
3. times, each --repeat times (median and max in ms): brand_sensor and relabel_sensor ticks evaluated like
   fic_assets/demo/run.py's tick() (build_sensor_context with the code location's resources), automation_sensor's
   evaluation of the automation conditions with the daemon's own evaluator and the previous tick's cursor
   (fic_assets/demo/automation_ticks.py evaluate_tick, what the daemon and the demo's automation_tick() run): after a
   promotion, when the report is stale, up to date, after one brand's crawl; the
   per-brand predictions queries on a read-only connection (cold open + query, then warm); the analytics snapshot
   (what the `analytics_snapshot` asset does: open DuckDB read-only, write_snapshot), then what a reader does
   (open_snapshot; the dashboard's first page: open_snapshot + the overview summary, summary.brand_overview) and
   the static report from the snapshot (write_report); the dashboard's overview page as Streamlit renders it for
   one session (AppTest: the first render of a freshly started dashboard, and a later visitor's from its cache).

    .venv/bin/python benchmarks/scale.py [--brands 1000] [--pieces 200000] [--images 600000] [--results-dir DIR]

Numbers go to benchmarks/results/scale.json (or --results-dir / $FIC_BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import _record  # noqa: E402

SENSOR_TARGET_MS = 1000.0
SNAPSHOT_TARGET_MS = 5000.0  # "a few seconds": the snapshot's write, and open + overview for the dashboard's first page
# model.json for the snapshot (the benchmark has no trained model): a confusion matrix like the real photos' model's,
# so the worn-share correction and its bootstrap interval run as they do in production.
SNAPSHOT_MODEL = {"version": "v1", "cv": {"f1": 0.99, "f1_std": 0.017, "n": 149, "folds": 5, "repeats": 3},
                  "confusion_matrix": {"tp": 97, "fn": 1, "tn": 50, "fp": 1}, "labels_used": {"worn": 98, "not_worn": 51}}
QUERY_TARGET_WARM_MS = 100.0
QUERY_TARGET_MS = 1000.0

# Display names as shops write them: apostrophes, slashes, ampersands, dots, umlauts, a double quote.
NAME_STEMS = (
    "Levi's", "Selected Femme/Homme", "Björn Borg", "Marc O'Polo", "Jack & Jones", "s.Oliver", "Tommy Hilfiger",
    "Vero Moda", "G-Star RAW", "Hunkemöller", "Calvin Klein Jeans", "Only & Sons", "Søstrene Grene", "Napapijri",
    'Pier One "Basics"', "Esprit Collection", "Scotch & Soda", "Ünique/Atelier", "Armedangels", "Peak Performance",
)
COLOURS = ("black", "white", "navy", "blue", "grey", "beige", "dark blue", "light grey", "khaki", "olive", "red",
           "pink", "brown", "green", "off-white", "camel", "burgundy", "yellow", "multicoloured", "denim")
COLOUR_WEIGHTS = np.array([14, 10, 8, 8, 8, 6, 5, 5, 4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 2, 3], dtype=float)
PACKSHOT_SHARE = 0.8  # of pieces that have a packshot among their images (the shop's filter=packshot URL)


def slugify(name: str) -> str:
    """[a-z0-9-] like the crawler's brand slugs: Björn Borg 003 -> bjorn-borg-003, Levi's -> levis."""
    ascii_name = unicodedata.normalize("NFKD", name.replace("ø", "o").replace("Ø", "O")).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"['\"]", "", ascii_name.lower())
    return re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")


def make_brands(n: int) -> list[dict]:
    width = max(3, len(str(n)))
    brands = []
    for i in range(1, n + 1):
        name = f"{NAME_STEMS[(i - 1) % len(NAME_STEMS)]} {i:0{width}d}"
        slug = slugify(name)
        brands.append({"slug": slug, "name": name, "url": f"https://shop.example/{slug}/"})
    assert len({b["slug"] for b in brands}) == n, "brand slugs must be unique"
    return brands


def split_exact(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Integers >= minimum, proportional to weights, summing to total (largest remainder)."""
    n = len(weights)
    if total < n * minimum:
        raise SystemExit(f"{total} cannot be split into {n} parts of at least {minimum}")
    share = (total - n * minimum) * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    remainder = total - n * minimum - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return counts + minimum


def make_catalogue(brands: list[dict], pieces: int, images: int, seed: int) -> tuple[list[list[dict]], dict]:
    """Items per brand (in crawl order: brand after brand) with their images; and what was generated."""
    rng = np.random.default_rng(seed)
    per_brand = split_exact(pieces, rng.lognormal(0.0, 1.0, len(brands)), 1)  # few big brands, many small ones
    # 1-6 images per piece, around images/pieces on average, summing exactly to the requested number.
    per_piece = split_exact(images, rng.gamma(4.0, 1.0, pieces), 1)
    while per_piece.max() > 6 and images <= 6 * pieces:
        big = np.flatnonzero(per_piece > 6)
        small = rng.choice(np.flatnonzero(per_piece < 6), len(big), replace=False)
        per_piece[big] -= 1
        per_piece[small] += 1
    prices = np.round(np.exp(rng.normal(np.log(45.0), 0.6, pieces))) - rng.choice([0.01, 0.05], pieces)
    no_price = rng.random(pieces) < 0.03  # sold out: the page shows no offer
    colour_index = rng.choice(len(COLOURS), pieces, p=COLOUR_WEIGHTS / COLOUR_WEIGHTS.sum())
    no_colour = rng.random(pieces) < 0.02
    has_packshot = rng.random(pieces) < PACKSHOT_SHARE
    packshot_first = rng.random(pieces) < 0.3  # some galleries open with the packshot, most end with it

    catalogue, piece = [], 0
    packshots = 0
    for b, brand in enumerate(brands):
        items = []
        for _ in range(per_brand[b]):
            n_images = int(per_piece[piece])
            item_id = f"{brand['slug'][:2].upper()}{b:04d}{piece:07d}-K{piece % 90 + 10}"
            packshot_at = (0 if packshot_first[piece] else n_images - 1) if has_packshot[piece] and n_images > 1 else -1
            packshots += packshot_at >= 0
            digest = hashlib.blake2b(item_id.encode(), digest_size=12).hexdigest()
            items.append(
                {
                    "item_id": item_id,
                    "sku": item_id,
                    "name": f"{('Slim fit jeans', 'T-shirt basic', 'Parka', 'Sneakers', 'Summer dress')[piece % 5]} {piece}",
                    "brand": brand["name"],
                    "brand_slug": brand["slug"],
                    "price": None if no_price[piece] else float(prices[piece]),
                    "currency": None if no_price[piece] else "EUR",
                    "colour": None if no_colour[piece] else COLOURS[colour_index[piece]],
                    "url": f"https://shop.example/{brand['slug']}-{piece}.html",
                    "images": [
                        {
                            "url": f"https://img.example/article/spp-media-p1/{digest}-{k}.jpg?imwidth=1800"
                            + ("&filter=packshot" if k == packshot_at else ""),
                            "position": k,
                            "is_packshot": k == packshot_at,
                        }
                        for k in range(n_images)
                    ],
                }
            )
            piece += 1
        catalogue.append(items)
    facts = {
        "pieces_per_brand_median": int(np.median(per_brand)),
        "pieces_per_brand_max": int(per_brand.max()),
        "packshot_images": int(packshots),
        "packshot_share": round(packshots / images, 3),
        "pieces_without_price": int(no_price.sum()),
    }
    return catalogue, facts


def crawl_batches(catalogue: list[list[dict]], batch_pieces: int):
    """Consecutive brands grouped into upserts of about batch_pieces pieces (a crawl run over a brand range)."""
    batch: list[dict] = []
    for items in catalogue:
        batch.extend(items)
        if len(batch) >= batch_pieces:
            yield batch
            batch = []
    if batch:
        yield batch


def prediction_frames(con, model_version: str, share: float, chunk: int, seed: int, predicted_at):
    """Fake predictions (label, score, a few errors) for `share` of the images, in the predict job's chunk size."""
    from fic_assets.defs.predictions.predict import PREDICTION_COLUMNS

    rng = np.random.default_rng(seed)
    frame = con.execute(
        """SELECT i.image_url, i.item_id, p.brand_slug, i.is_packshot
           FROM images i JOIN pieces p USING (item_id) ORDER BY p.brand_slug, i.image_url"""
    ).df()
    frame = frame[rng.random(len(frame)) < share].reset_index(drop=True)
    # Packshots mostly not worn, the other images mostly worn: the report's agreement column has something to say.
    p_worn = np.where(frame["is_packshot"], 0.05, 0.85)
    score = np.clip(rng.normal(np.where(rng.random(len(frame)) < p_worn, 0.9, 0.1), 0.08), 0.0, 1.0)
    error = rng.random(len(frame)) < 0.005
    frame["label"] = np.where(error, "error", np.where(score >= 0.5, "worn", "not_worn"))
    frame["score"] = np.where(error, np.nan, score)
    frame["error"] = np.where(error, "download: HTTP 404", None)
    frame["model_version"] = model_version
    frame["predicted_at"] = predicted_at
    frame = frame.loc[:, list(PREDICTION_COLUMNS)]
    for start in range(0, len(frame), chunk):
        yield frame.iloc[start:start + chunk]


def label_frame(con, labels: int, fresh: int, seed: int, round_started) -> pd.DataFrame:
    """Resolved human labels: `labels - fresh` from the weeks before the current round, `fresh` after it started."""
    rng = np.random.default_rng(seed)
    urls = con.execute("SELECT image_url, item_id FROM images ORDER BY image_url").df()
    urls = urls.iloc[rng.choice(len(urls), min(labels, len(urls)), replace=False)].reset_index(drop=True)
    n = len(urls)
    fresh = min(fresh, n)
    before = [round_started - timedelta(days=90) * float(x) - timedelta(minutes=1) for x in rng.random(n - fresh)]
    after = [round_started + timedelta(seconds=1 + i) for i in range(fresh)]
    return pd.DataFrame(
        {
            "image_url": urls["image_url"],
            "item_id": urls["item_id"],
            "label": rng.choice(["worn", "not_worn", "unusable"], n, p=[0.55, 0.42, 0.03]),
            "annotator": rng.choice(["anna", "ben", "chloe"], n),
            "annotated_at": pd.to_datetime(before + after, utc=True),
            "task_id": np.arange(1, n + 1, dtype=np.int64),
            "annotation_id": np.arange(1, n + 1, dtype=np.int64),
            "lead_time": rng.gamma(2.0, 2.0, n),
            "annotations": np.ones(n, dtype=np.int64),
            "agreement": np.ones(n),
        }
    )


# --- timing ----------------------------------------------------------------------------------------------


def stats(samples: list[float]) -> dict:
    return {"median_ms": round(statistics.median(samples), 1), "max_ms": round(max(samples), 1), "runs": len(samples)}


def repeat(fn, times: int) -> tuple[dict, object]:
    samples, result = [], None
    for _ in range(times):
        start = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return stats(samples), result


@contextlib.contextmanager
def step(what: str):
    print(f"[scale] {what} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"[scale] {what}: {time.perf_counter() - start:.1f} s", flush=True)


def verdict(ms: float, target: float) -> str:
    return "met" if ms < target else "MISSED"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brands", type=int, default=1000)
    parser.add_argument("--pieces", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=600_000)
    parser.add_argument("--labels", type=int, default=None, help="human labels rows (default: 3%% of the images)")
    parser.add_argument("--predicted-share", type=float, default=0.9, help="share of the images with a prediction")
    parser.add_argument("--batch-pieces", type=int, default=10_000, help="pieces per upsert_items call (a crawl run)")
    parser.add_argument("--prediction-chunk", type=int, default=2000, help="rows per write_predictions call (predict_brands' chunk)")
    parser.add_argument("--history", type=int, default=0, help="older rounds of per-brand events in the instance (weeks of re-crawls)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tmp-dir", default=None, help="where the temp DuckDB and Dagster instance go (default: the system temp dir, on disk)")
    parser.add_argument("--only-analytics", action="store_true",
                        help="only the DuckDB catalogue and the analytics snapshot (section 4), into analytics_snapshot.json")
    parser.add_argument("--results-dir", default=os.environ.get("FIC_BENCH_RESULTS_DIR"), help="where scale.json goes (default benchmarks/results)")
    args = parser.parse_args(argv)
    labels_total = args.labels if args.labels is not None else max(1, round(args.images * 0.03))
    if args.results_dir:
        _record.RESULTS = Path(args.results_dir)

    with tempfile.TemporaryDirectory(prefix="fic-scale-", dir=args.tmp_dir) as tmp:
        root = Path(tmp)
        db_path = root / "data" / "fic.duckdb"
        # Before anything from fic_assets reads them: the code location resolves EnvVars when the context is built.
        os.environ.update(
            {
                "FIC_DATA_DIR": str(root / "data"),
                "FIC_DUCKDB": str(db_path),
                "FIC_MODELS_DIR": str(root / "models"),
                "FIC_REPORTS_DIR": str(root / "reports"),
                "FIC_IMAGE_CACHE_DIR": str(root / "cache"),
            }
        )
        with step("import fic_assets.definitions"):
            import dagster as dg

            from fic_assets.platform import warehouse
            from fic_assets.definitions import defs as load_defs
            from fic_assets.defs.labelling.labels import write_labels
            from fic_assets.defs.predictions.predict import image_counts, images_to_predict, write_predictions
            from fic_assets.defs.analytics import summary as analytics_summary
            from fic_assets.defs.analytics.snapshot import open_snapshot, write_snapshot
            from fic_assets.defs.reports.brand_report import write_report

            defs = load_defs()

        numbers: dict = {"brands": args.brands, "pieces": args.pieces, "images": args.images}
        timings: dict = {}

        # ---- 1. DuckDB -------------------------------------------------------------------------------------
        brands = make_brands(args.brands)
        with step("generate the catalogue in memory"):
            catalogue, facts = make_catalogue(brands, args.pieces, args.images, args.seed)
        t0 = warehouse.utcnow() - timedelta(days=7)
        with warehouse.connect(db_path) as con:
            start = time.perf_counter()
            warehouse.upsert_brands(con, brands, seen_at=t0)
            timings["upsert_brands_s"] = round(time.perf_counter() - start, 3)
            with step(f"upsert_items: {args.pieces:,} pieces, {args.images:,} images in batches of ~{args.batch_pieces:,} pieces"):
                start = time.perf_counter()
                batches = 0
                for batch in crawl_batches(catalogue, args.batch_pieces):
                    warehouse.upsert_items(con, batch, seen_at=t0)
                    batches += 1
                timings["upsert_items_s"] = round(time.perf_counter() - start, 2)
                timings["upsert_items_batches"] = batches
            del catalogue
            with step("write_predictions"):
                start = time.perf_counter()
                chunks = 0
                for chunk in prediction_frames(con, "v1", args.predicted_share, args.prediction_chunk, args.seed, t0 + timedelta(days=1)):
                    write_predictions(con, chunk)
                    chunks += 1
                timings["write_predictions_s"] = round(time.perf_counter() - start, 2)
                timings["write_predictions_chunks"] = chunks
            counts = warehouse.table_counts(con)
            packshots = con.execute("SELECT count(*) FILTER (WHERE is_packshot), count(*) FILTER (WHERE flag_model >= 0) FROM images").fetchone()
        timings["generate_duckdb_s"] = round(timings["upsert_brands_s"] + timings["upsert_items_s"] + timings["write_predictions_s"], 2)
        numbers.update({f"db_{key}": value for key, value in counts.items()})
        numbers.update(facts)
        numbers["db_images_flagged_by_model"] = packshots[1]

        if not args.only_analytics:  # sections 2 and 3 need the Dagster instance; 4 needs DuckDB only
            # ---- 2. the Dagster instance ----------------------------------------------------------------------
            (root / "dagster_home").mkdir()
            with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="brands"))

                def tick(sensor_name: str, cursor: str | None = None):
                    sensor = defs.resolve_sensor_def(sensor_name)
                    # The sensors log at INFO to a console logger each context creates (brand_sensor names every new
                    # brand: 1,000 slugs a tick); formatted as usual, but not printed, to keep the output readable.
                    with contextlib.redirect_stderr(io.StringIO()), \
                            dg.build_sensor_context(instance=instance, resources=defs.resources, sensor_name=sensor_name, cursor=cursor) as context:
                        return sensor(context)

                # brand_sensor, first tick after `brands`: every brand is new (nothing applied, so each run is the same).
                timings["brand_sensor_all_new_ms"], result = repeat(lambda: tick("brand_sensor"), args.repeat)
                (add,) = result.dynamic_partitions_requests
                assert len(add.partition_keys) == args.brands and len(result.run_requests) == 1, result
                with step(f"add {args.brands:,} brand partitions"):
                    start = time.perf_counter()
                    instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
                    timings["add_dynamic_partitions_ms"] = round((time.perf_counter() - start) * 1000, 1)
                # A new `brands` materialization with nothing new: the sensor reads DuckDB and every partition.
                timings["brand_sensor_no_new_ms"], result = repeat(lambda: tick("brand_sensor"), args.repeat)
                assert not result.run_requests and "no new brands" in result.skip_reason.skip_message, result
                cursor = result.cursor
                timings["brand_sensor_cursor_current_ms"], result = repeat(lambda: tick("brand_sensor", cursor), args.repeat)
                assert isinstance(result, dg.SkipReason), result

                partitions = instance.get_dynamic_partitions("brands")
                events = 0

                def per_brand(key: str) -> None:
                    nonlocal events
                    for slug in partitions:
                        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=slug))
                    events += len(partitions)

                def one(key: str) -> None:
                    nonlocal events
                    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
                    events += 1

                with step(f"materialization events ({args.history} older rounds + the current state)"):
                    start = time.perf_counter()
                    one("production_model")
                    for _ in range(args.history):  # older weeks: a re-crawl of every brand, then its predictions
                        per_brand("pieces")
                        per_brand("image_urls")
                        per_brand("brand_predictions")
                        one("analytics_snapshot")
                        one("brand_report")
                    per_brand("pieces")
                    per_brand("image_urls")
                    per_brand("brand_predictions")
                    one("analytics_snapshot")
                    one("brand_report")
                    timings["report_events_s"] = round(time.perf_counter() - start, 2)
                    timings["events_reported"] = events
                    timings["report_event_ms_each"] = round(timings["report_events_s"] * 1000 / events, 1)

                from types import SimpleNamespace

                from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

                from fic_assets.defs.predictions.sensors import AUTOMATION_SENSOR_NAME
                from fic_assets.demo.automation_ticks import evaluate_tick
                from fic_assets.demo.run import requested_runs

                automation_graph = defs.resolve_asset_graph()
                automation_sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR_NAME)

                def evaluate(cursor):
                    """One automation_sensor tick as the daemon evaluates it (its evaluator, which loads the brand
                    partitions once a tick), from the previous tick's cursor: (the new cursor, what it requests by
                    asset: partition keys, {None} unpartitioned)."""
                    cursor = cursor or AssetDaemonCursor.empty()
                    run_requests, new_cursor, _ = evaluate_tick(instance, automation_graph, automation_sensor, cursor,
                                                                cursor.evaluation_id + 1, {})
                    requested: dict[str, set] = {}
                    for keys, partitions in requested_runs(run_requests, automation_graph):
                        for key in keys:
                            requested.setdefault(key.to_user_string(), set()).update(partitions)
                    return SimpleNamespace(cursor=new_cursor), requested

                first, requested = evaluate(None)  # the sensor's first tick takes this state as handled
                assert requested == {}, requested
                one("production_model")  # a promotion: every brand's predictions are stale
                timings["automation_all_stale_ms"], (after_promotion, requested) = repeat(lambda: evaluate(first.cursor), args.repeat)
                assert requested == {"brand_predictions": set(partitions)}, requested  # one request: one backfill, one run
                per_brand("brand_predictions")  # the predict run over all brands
                settling, requested = evaluate(after_promotion.cursor)
                assert requested == {}, requested  # the report waits a tick after its inputs updated
                timings["automation_report_stale_ms"], (report_due, requested) = repeat(lambda: evaluate(settling.cursor), args.repeat)
                assert requested == {"analytics_snapshot": {None}, "brand_report": {None}}, requested  # one run
                one("analytics_snapshot")
                one("brand_report")
                timings["automation_up_to_date_ms"], (current, requested) = repeat(lambda: evaluate(report_due.cursor), args.repeat)
                assert requested == {}, requested
                crawled = partitions[len(partitions) // 2]
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="image_urls", partition=crawled))
                events += 1
                timings["automation_one_brand_crawled_ms"], (_, requested) = repeat(lambda: evaluate(current.cursor), args.repeat)
                assert requested == {"brand_predictions": {crawled}}, requested

                # relabel_sensor: a labelling round started (label_tasks), then human labels arrive in DuckDB.
                one("label_tasks")
                round_record = instance.fetch_materializations(dg.AssetKey("label_tasks"), limit=1).records[0]
                round_started = datetime.fromtimestamp(round_record.timestamp, tz=timezone.utc)
                fresh = min(120, labels_total)
                with warehouse.connect(db_path) as con:
                    start = time.perf_counter()
                    write_labels(con, label_frame(con, labels_total, fresh, args.seed, round_started))
                    timings["write_labels_s"] = round(time.perf_counter() - start, 2)
                    numbers["db_labels"] = con.execute("SELECT count(*) FROM labels").fetchone()[0]
                numbers["labels_since_round"] = fresh
                timings["relabel_sensor_ms"], result = repeat(lambda: tick("relabel_sensor"), args.repeat)
                threshold = int(os.environ.get("FIC_RELABEL_MIN_LABELS", "50"))
                if fresh >= threshold:
                    assert isinstance(result, dg.RunRequest) and result.job_name == "retrain_job", result
                else:
                    assert isinstance(result, dg.SkipReason), result
                numbers["instance_events"] = events + 1  # + the `brands` materialization

            numbers["db_file_mb"] = round(db_path.stat().st_size / 1e6, 1)

            # ---- 3. one brand partition's queries, the report --------------------------------------------------
            middle = partitions[len(partitions) // 2]
            with warehouse.connect(db_path, read_only=True) as con:
                biggest = con.execute("SELECT brand_slug FROM pieces GROUP BY brand_slug ORDER BY count(*) DESC, brand_slug LIMIT 1").fetchone()[0]
                sizes = dict(con.execute("SELECT p.brand_slug, count(*) FROM images i JOIN pieces p USING (item_id) GROUP BY 1").fetchall())
            numbers["query_brand_middle"] = {"slug": middle, "images": sizes.get(middle, 0)}
            numbers["query_brand_biggest"] = {"slug": biggest, "images": sizes.get(biggest, 0)}

            def open_only():
                with warehouse.connect(db_path, read_only=True) as con:
                    return con

            timings["duckdb_open_read_only_ms"], _ = repeat(open_only, args.repeat)

            def cold(slug: str, version: str):
                with warehouse.connect(db_path, read_only=True) as con:
                    return images_to_predict(con, [slug], version), image_counts(con, [slug])

            for label, slug in (("middle", middle), ("biggest", biggest)):
                timings[f"brand_query_{label}_cold_ms"], (todo, totals) = repeat(lambda: cold(slug, "v2"), args.repeat)
                assert len(todo) == totals.get(slug, 0) == sizes.get(slug, 0), (len(todo), totals)
                with warehouse.connect(db_path, read_only=True) as con:
                    images_to_predict(con, [slug], "v2")
                    timings[f"images_to_predict_{label}_new_model_warm_ms"], _ = repeat(lambda: images_to_predict(con, [slug], "v2"), args.repeat)
                    timings[f"images_to_predict_{label}_same_model_warm_ms"], _ = repeat(lambda: images_to_predict(con, [slug], "v1"), args.repeat)
                    timings[f"image_counts_{label}_warm_ms"], _ = repeat(lambda: image_counts(con, [slug]), args.repeat)

        # ---- 4. the analytics snapshot and its readers ------------------------------------------------------
        analytics = root / "analytics"

        def snapshot_asset():
            """What the analytics_snapshot asset does: DuckDB opened read-only, every table to Parquet, the switch."""
            with warehouse.connect(db_path, read_only=True) as con:
                return write_snapshot(con, analytics, model=SNAPSHOT_MODEL)

        machine: dict = {}
        with step("analytics snapshot"), _record.meter(machine):  # how busy the machine was meanwhile
            repeats = max(3, args.repeat // 2)
            timings["write_snapshot_ms"], written = repeat(snapshot_asset, repeats)
        numbers["snapshot_write_machine"] = machine
        numbers["snapshot_rows"] = written.rows
        numbers["snapshot_mb"] = round(sum(f.stat().st_size for f in written.path.iterdir()) / 1e6, 1)

        def open_only_snapshot():
            with open_snapshot(analytics) as snap:
                return len(snap.tables)

        def first_page():
            """The dashboard's first page: the current snapshot opened, the overview of every brand and the totals."""
            with open_snapshot(analytics) as snap:
                overview = analytics_summary.brand_overview(snap)
                return overview, analytics_summary.overview_totals(snap, overview)

        timings["open_snapshot_ms"], _ = repeat(open_only_snapshot, repeats)
        timings["open_snapshot_and_overview_ms"], (overview, totals) = repeat(first_page, repeats)

        def dashboard_render(cold: bool):
            """The dashboard's overview page rendered for one browser session by Streamlit's AppTest (the script as
            `fic dashboard` runs it: snapshot load, overview, totals, table, CSV and Parquet downloads). cold: a
            freshly started dashboard (Streamlit's caches empty), else a later visitor of the same snapshot."""
            import streamlit as st
            from streamlit.testing.v1 import AppTest

            from fic_assets.dashboard.server import APP

            if cold:
                st.cache_resource.clear()
                st.cache_data.clear()
            test = AppTest.from_file(str(APP), default_timeout=300).run()
            assert not test.exception and not test.error, [e.value for e in [*test.exception, *test.error]]
            return len(test.dataframe[0].value)

        os.environ["FIC_ANALYTICS_DIR"] = str(analytics)
        with step("dashboard first render (AppTest)"):
            timings["dashboard_first_render_ms"], shown = repeat(lambda: dashboard_render(True), repeats)
            timings["dashboard_render_cached_ms"], _ = repeat(lambda: dashboard_render(False), repeats)
        assert shown == args.brands, shown
        assert len(overview) == args.brands and totals["images"] == written.rows["images"], (len(overview), totals)
        with open_snapshot(analytics) as snap:
            timings["brand_overview_ms"], _ = repeat(lambda: analytics_summary.brand_overview(snap), repeats)
            reports_dir = root / "reports"
            timings["write_report_ms"], report = repeat(lambda: write_report(snap, reports_dir), min(3, args.repeat))
            numbers["report_html_kb"] = round(report.index_html.stat().st_size / 1e3, 1)

    numbers["timings"] = timings
    numbers["targets"] = targets(timings)
    numbers["history_rounds"] = args.history
    numbers["temp_dir"] = args.tmp_dir or tempfile.gettempdir()
    numbers["note"] = (f"{os.cpu_count()} cores (shared with other jobs); sqlite Dagster instance and DuckDB in temp_dir; "
                       "sensor ticks are evaluation only (build_sensor_context + the sensor, like fic demo's tick(); the automation: "
                       "the daemon's evaluator, as its automation_tick() and the daemon run it)")
    print_table(numbers)
    _record.record("analytics_snapshot" if args.only_analytics else "scale", numbers)
    return numbers


SENSOR_KEYS = ("brand_sensor_all_new_ms", "brand_sensor_no_new_ms", "brand_sensor_cursor_current_ms",
               "automation_all_stale_ms", "automation_report_stale_ms", "automation_up_to_date_ms",
               "automation_one_brand_crawled_ms", "relabel_sensor_ms")


def targets(timings: dict) -> dict:
    """Each target with the measured max (ticks, warm queries) and whether it was met."""
    out = {}
    for key in SENSOR_KEYS:
        if key not in timings:  # --only-analytics
            continue
        out[key] = {"target_ms": SENSOR_TARGET_MS, "max_ms": timings[key]["max_ms"], "met": timings[key]["max_ms"] < SENSOR_TARGET_MS}
    for key, value in timings.items():
        if key.startswith(("images_to_predict_", "image_counts_")):
            out[key] = {"target_ms": QUERY_TARGET_WARM_MS, "median_ms": value["median_ms"], "met": value["median_ms"] < QUERY_TARGET_WARM_MS}
        elif key in ("write_snapshot_ms", "open_snapshot_and_overview_ms", "dashboard_first_render_ms"):
            out[key] = {"target_ms": SNAPSHOT_TARGET_MS, "max_ms": value["max_ms"], "met": value["max_ms"] < SNAPSHOT_TARGET_MS}
        elif key.startswith("brand_query_"):
            out[key] = {"target_ms": QUERY_TARGET_MS, "max_ms": value["max_ms"], "met": value["max_ms"] < QUERY_TARGET_MS}
    return out


def print_table(numbers: dict) -> None:
    print()
    print(f"{'measurement':<52} {'median ms':>10} {'max ms':>10}   target")
    goals = numbers["targets"]
    for key, value in numbers["timings"].items():
        if not isinstance(value, dict):
            continue
        goal = goals.get(key)
        mark = ""
        if goal:
            kind = "median" if "median_ms" in goal else "max"
            mark = f"< {goal['target_ms']:.0f} ms ({kind}): {'met' if goal['met'] else 'MISSED'}"
        print(f"{key:<52} {value['median_ms']:>10.1f} {value['max_ms']:>10.1f}   {mark}")
    print()


if __name__ == "__main__":
    main()
