"""Per-brand predictions: the ONNX fast path, the idempotent write-back, bad input, and the Dagster side
(the partitioned asset, a one-run range over all brands, the missing-model error, the automation conditions, the CLI).

Real components: the demo shop on 127.0.0.1 serves the images (with its broken ones), a real trained model,
DuckDB files, OpenVINO, temp Dagster instances and the `dagster` CLI in a subprocess.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from fic_assets.defs.model import artifact
from fic_assets.platform import warehouse
from fic_assets.demo.shop.catalogue import build_catalogue, image_url, product_url
from fic_assets.demo.shop.images import image_bytes
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.model.artifact import CARD_FILE, ONNX_FILE, export_onnx
from fic_assets.defs.model.scoring import FetchOptions, Scorer, model_pixels
from fic_assets.defs.predictions.predict import predict_brands
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.conftest import dg_command, free_port, platform_env

# Brand paths are the partition keys. Levi's (quote), Selected Femme/Homme (slash), Marc O'Polo (quote) and
# Björn Borg (unicode) are the awkward names; Levi's, Jack & Jones and Björn Borg hold the broken images.
BRANDS = ("levis", "jack-jones", "bjorn-borg", "selected-femme-homme", "marc-o-polo")
PER_BRAND = 16  # the demo shop's broken images sit on products 7-14 of their brand
EXPECTED_ERRORS = {"truncated": "truncated", "huge": "too_large", "missing": "download", "empty": "empty", "html": "not_an_image"}
BIN = Path(sys.executable).parent


def catalogue_items(base_url: str, brand_paths=BRANDS, per_brand: int = PER_BRAND) -> tuple[list[dict], dict[str, object]]:
    """Crawl-shaped items for the first products of the brands, and each image URL's catalogue image."""
    chosen: dict[str, list] = {}
    for product in build_catalogue(42).products:
        if product.brand.path in brand_paths and len(chosen.setdefault(product.brand.path, [])) < per_brand:
            chosen[product.brand.path].append(product)
    items, images = [], {}
    for path, products in chosen.items():
        for product in products:
            urls = [(image_url(base_url, image), image) for image in product.images]
            images.update(urls)
            items.append({
                "item_id": product.item_id, "sku": product.sku, "name": product.name, "brand": product.brand.name,
                "brand_slug": path, "price": product.price, "currency": "EUR", "colour": product.colour,
                "url": product_url(base_url, product),
                "images": [{"url": url, "position": image.position, "is_packshot": image.is_packshot} for url, image in urls],
            })
    return items, images


@pytest.fixture
def shop_db(tmp_path, demo_shop_url):
    items, images = catalogue_items(demo_shop_url)
    path = tmp_path / "fic.duckdb"
    with warehouse.connect(path) as con:
        warehouse.upsert_brands(con, brand_rows(items))
        warehouse.upsert_items(con, items)
    return path, images


def brand_rows(items: list[dict]) -> list[dict]:
    return list({item["brand_slug"]: {"slug": item["brand_slug"], "name": item["brand"], "url": item["url"]} for item in items}.values())


def connector(path):
    return lambda: warehouse.connect(path)


def rows(path, sql: str, params=()) -> list[tuple]:
    with warehouse.connect(path, read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def new_version_of(model_dir: Path, target: Path, version: str) -> Path:
    """The same weights under another version name: what a retrain + promotion looks like to predictions."""
    shutil.copytree(model_dir, target)
    card = json.loads((target / CARD_FILE).read_text())
    (target / CARD_FILE).write_text(json.dumps({**card, "version": version}))
    return target


# --- the fast path -----------------------------------------------------------------------------------


def test_onnx_export_is_made_once_per_weights(trained_model):
    """(That the exported graph scores like the eager model is test_model's job.)"""
    scorer = Scorer.load(trained_model)
    healthy = [image for product in build_catalogue(42).products[:6] for image in product.images if image.defect is None]
    scores = scorer.scores(np.stack([model_pixels(image_bytes(image, 420).body, scorer.size) for image in healthy]))
    assert len(scores) == len(healthy) > 10 and all(0.0 <= score <= 1.0 for score in scores)
    exported = trained_model / ONNX_FILE
    stamp = exported.stat().st_mtime_ns
    assert export_onnx(trained_model) == exported and exported.stat().st_mtime_ns == stamp


def test_cmyk_and_transparent_png_are_scored_not_rejected(trained_model):
    """Bad input: a CMYK JPEG and a PNG with alpha (both valid, awkward modes) decode to RGB and get a score."""
    scorer = Scorer.load(trained_model)
    awkward = [image for product in build_catalogue(42).products for image in product.images if image.defect in ("cmyk", "png_alpha")]
    assert {image.defect for image in awkward} == {"cmyk", "png_alpha"}
    pixels = np.stack([model_pixels(image_bytes(image, 420).body, scorer.size) for image in awkward])
    assert pixels.shape == (2, scorer.size, scorer.size, 3) and pixels.dtype == np.uint8
    assert all(0.0 <= score <= 1.0 for score in scorer.scores(pixels))


# --- predict_brands on the demo shop -----------------------------------------------------------------------


def test_every_image_gets_a_label_or_a_recorded_failure(shop_db, trained_model, tmp_path):
    """Bad input: a truncated JPEG, a decompression bomb, a 404, an empty body and an HTML page served as an image,
    among brands named Levi's, Selected Femme/Homme and Marc O'Polo (quotes, a slash) and Björn Borg (unicode)."""
    path, images = shop_db
    run = predict_brands(connector(path), list(BRANDS), trained_model, ImageCache(tmp_path / "cache"))

    stored = {url: (label, score, error) for url, label, score, error in rows(path, "SELECT image_url, label, score, error FROM predictions")}
    assert stored.keys() == images.keys()  # every image of the five brands, once
    for url, image in images.items():
        label, score, error = stored[url]
        if image.defect in EXPECTED_ERRORS:
            assert label == "error" and score is None and error.startswith(EXPECTED_ERRORS[image.defect] + ":"), (image.defect, error)
        else:  # healthy, CMYK and PNG-alpha images
            assert label in ("worn", "not_worn") and 0.0 <= score <= 1.0 and error is None, (image.defect, error)
    assert "HTTP 404" in stored[next(url for url, image in images.items() if image.defect == "missing")][2]
    assert {image.defect for image in images.values()} >= set(EXPECTED_ERRORS)

    healthy = [url for url, image in images.items() if image.defect is None]
    accuracy = np.mean([stored[url][0] == images[url].truth for url in healthy])
    assert accuracy >= 0.9, accuracy  # the preprocessing matches training (a channel or scale slip fails this)

    flags = dict(rows(path, "SELECT image_url, flag_model FROM images"))
    assert all(flags[url] == {"worn": 1, "not_worn": 0, "error": -1}[stored[url][0]] for url in images)
    by_brand = {slug: brand.as_metadata() for slug, brand in run.brands.items()}
    assert by_brand["levis"]["error_reasons"] == {"truncated": 1, "too_large": 1, "download": 1}
    assert by_brand["bjorn-borg"]["error_reasons"] == {"empty": 1, "not_an_image": 1}
    assert by_brand["jack-jones"]["errors"] == 0
    assert run.predicted == len(images) and run.errors == 5
    model_versions = rows(path, "SELECT DISTINCT model_version FROM predictions")
    assert model_versions == [(json.loads((trained_model / CARD_FILE).read_text())["version"],)]


def test_rerun_predicts_only_failures_and_a_new_model_predicts_all(shop_db, trained_model, tmp_path):
    """Bad input: the same brands twice (a re-run must add no row and leave good predictions alone)."""
    path, images = shop_db
    cache = ImageCache(tmp_path / "cache")
    predict_brands(connector(path), list(BRANDS), trained_model, cache)
    first = dict(rows(path, "SELECT image_url, predicted_at FROM predictions WHERE label <> 'error'"))

    again = predict_brands(connector(path), list(BRANDS), trained_model, cache)
    assert again.predicted == again.errors == 5  # only the failures are tried again (a 404 may come back)
    assert sum(brand.unchanged for brand in again.brands.values()) == len(images) - 5
    assert rows(path, "SELECT count(*), count(DISTINCT image_url) FROM predictions") == [(len(images), len(images))]
    assert dict(rows(path, "SELECT image_url, predicted_at FROM predictions WHERE label <> 'error'")) == first

    newer = new_version_of(trained_model, tmp_path / "v2", "v2-test")
    third = predict_brands(connector(path), list(BRANDS), newer, cache)
    assert third.predicted == len(images) and third.model_version == "v2-test"
    assert rows(path, "SELECT model_version, count(*) FROM predictions GROUP BY 1") == [("v2-test", len(images))]


def test_brand_with_no_images_completes_empty(shop_db, trained_model, tmp_path):
    """Bad input: a brand partition with no pieces and no images (and one whose name is only punctuation-safe)."""
    path, _ = shop_db
    run = predict_brands(connector(path), ["brand-without-images"], trained_model, ImageCache(tmp_path / "cache"))
    assert run.predicted == 0 and run.brands["brand-without-images"].as_metadata()["images"] == 0
    assert rows(path, "SELECT count(*) FROM predictions") == [(0,)]


def test_shop_down_records_connection_refused_and_keeps_other_predictions(shop_db, trained_model, tmp_path):
    """Bad input: an image host that is down (nothing listens on the port). Earlier predictions stay as they were."""
    path, images = shop_db
    cache = ImageCache(tmp_path / "cache")
    predict_brands(connector(path), ["jack-jones"], trained_model, cache)
    before = rows(path, "SELECT * FROM predictions ORDER BY image_url")
    dead = f"http://127.0.0.1:{free_port()}"
    items, _ = catalogue_items(dead, ("esprit",), per_brand=3)
    with warehouse.connect(path) as con:
        warehouse.upsert_items(con, items)
    run = predict_brands(connector(path), ["esprit"], trained_model, cache, options=FetchOptions(retries=0, timeout=2))
    assert run.predicted == run.errors == sum(len(item["images"]) for item in items)
    errors = rows(path, "SELECT DISTINCT error FROM predictions WHERE brand_slug = 'esprit'")
    assert errors == [("download: connection refused",)]
    assert rows(path, "SELECT DISTINCT flag_model FROM images i JOIN pieces p USING (item_id) WHERE p.brand_slug = 'esprit'") == [(-1,)]
    assert rows(path, "SELECT * FROM predictions WHERE brand_slug <> 'esprit' ORDER BY image_url") == before


def test_image_download_time_out_is_recorded(shop_db, trained_model, tmp_path):
    """Bad input: an image host that accepts the connection and never answers (a time-out)."""
    path, _ = shop_db
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept_and_stay_silent():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    try:
        items, _ = catalogue_items(f"http://127.0.0.1:{listener.getsockname()[1]}", ("vero-moda",), per_brand=1)
        with warehouse.connect(path) as con:
            warehouse.upsert_items(con, items)
        run = predict_brands(connector(path), ["vero-moda"], trained_model, ImageCache(tmp_path / "cache"),
                             options=FetchOptions(retries=0, timeout=0.5))
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
    assert run.errors == run.predicted == len(items[0]["images"])
    assert rows(path, "SELECT DISTINCT error FROM predictions WHERE brand_slug = 'vero-moda'") == [("download: timed out after 0.5 s",)]


# --- Dagster: the asset, its jobs and its automation----------------------------------------------------


@pytest.fixture
def platform(tmp_path, monkeypatch, shop_db):
    """The predictions domain's definitions on a DuckDB seeded with five brands, a temp instance and models dir."""
    from fic_assets.definitions import domain_defs

    path, images = shop_db
    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FIC_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(tmp_path / "analytics"))
    monkeypatch.setenv("FIC_IMAGE_CACHE_DIR", str(tmp_path / "cache"))
    defs = dg.Definitions.merge(domain_defs("predictions", "analytics", "reports"), dg.Definitions(resources={"duckdb": DuckDBResource(path=str(path))}))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("brands", list(BRANDS))
        yield defs, instance, path, images


def range_tags(first: str, last: str) -> dict:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def test_missing_production_model_fails_and_says_how_to_train(platform):
    defs, instance, path, _ = platform
    result = defs.resolve_job_def("predict_job").execute_in_process(instance=instance, partition_key="levis", raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure).step_failure_data.error.message
    assert "no production model" in failure and "retrain_job" in failure and "fic train" in failure
    assert rows(path, "SELECT count(*) FROM predictions") == [(0,)]


def test_all_brands_in_one_run_then_the_report(platform, trained_model):
    """An "all brands" range in one run (the single-run backfill policy), then the static report with its plots."""
    defs, instance, path, images = platform
    artifact.promote(trained_model, "v1", {"f1": 1.0})
    result = defs.resolve_job_def("predict_job").execute_in_process(instance=instance, tags=range_tags(BRANDS[0], BRANDS[-1]))
    assert result.success
    materializations = result.asset_materializations_for_node("brand_predictions")
    assert sorted(m.partition for m in materializations) == sorted(BRANDS)
    metadata = materializations[0].metadata
    assert metadata["predicted"].value == len(images) and metadata["errors"].value == 5
    assert set(metadata["per_brand"].value) == set(BRANDS)
    assert rows(path, "SELECT count(*) FROM predictions") == [(len(images),)]

    report = defs.resolve_job_def("report_job").execute_in_process(instance=instance)  # the snapshot, then the report
    assert report.success
    snapshot = report.asset_materializations_for_node("analytics_snapshot")[0].metadata
    assert snapshot["rows"].value["images"] == len(images)
    meta = report.asset_materializations_for_node("brand_report")[0].metadata
    assert meta["snapshot"].value == snapshot["version"].value
    index = Path(meta["report"].value)
    assert index == Path(dg.EnvVar("FIC_REPORTS_DIR").get_value()) / "index.html"
    html = index.read_text(encoding="utf-8")
    assert "Levi&#39;s" in html and "Selected Femme/Homme" in html and "Björn Borg" in html
    assert meta["worn_share"].value.startswith("**Worn share**\n\n![Worn share](data:image/png;base64,")


@pytest.fixture
def automation():
    """The whole code location's asset graph (the conditions look at crawl and model assets too) on a temp instance,
    with the brand partitions; events are recorded runless, so nothing runs."""
    from fic_assets.definitions import defs as load_defs

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("brands", list(BRANDS))
        yield load_defs(), instance


class Ticks:
    """Successive evaluations of the automation conditions, as automation_sensor's ticks (one cursor)."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def __call__(self) -> dict[str, list]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        keys = ("production_model", "brand_predictions", "analytics_snapshot", "brand_report")
        return {key: sorted(result.get_requested_partitions(dg.AssetKey(key)), key=str) for key in keys
                if result.get_num_requested(dg.AssetKey(key))}


def materialize(instance, key: str, partitions=(None,)):
    for partition in partitions:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def check_model(instance, passed: bool):
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(asset_key=dg.AssetKey("model"), check_name="model_quality", passed=passed))


# The snapshot once its inputs settled, and the report with it (eager: requested in the same tick, so one run).
REPORT = {"analytics_snapshot": [None], "brand_report": [None]}


def test_automation_refreshes_only_stale_brands_then_the_report(automation):
    """The assets' automation conditions: a crawl before any model refreshes the report only; a model is promoted
    only once model_quality passed; a promotion makes every brand stale at once; a crawl of some brands refreshes
    only those; the report follows once its inputs settled."""
    defs, instance = automation
    tick = Ticks(defs, instance)
    assert tick() == {}  # nothing crawled, no model

    materialize(instance, "pieces", BRANDS)
    materialize(instance, "image_urls", BRANDS)
    assert tick() == {}  # the snapshot waits a tick after its inputs updated
    assert tick() == REPORT  # no model yet: the snapshot and the report show the crawl
    materialize(instance, "analytics_snapshot")
    materialize(instance, "brand_report")

    materialize(instance, "model")
    assert tick() == {}  # not checked yet
    check_model(instance, passed=False)
    assert tick() == {}  # failed model_quality: never promoted
    check_model(instance, passed=True)
    assert tick() == {"production_model": [None]}
    materialize(instance, "production_model")
    assert tick() == {"brand_predictions": sorted(BRANDS)}  # a promotion: every brand, in one request
    assert tick() == {}  # requested once

    materialize(instance, "brand_predictions", BRANDS)
    assert tick() == {}
    assert tick() == REPORT
    materialize(instance, "analytics_snapshot")
    materialize(instance, "brand_report")
    assert tick() == {}

    crawled = [BRANDS[1], BRANDS[3]]
    materialize(instance, "pieces", crawled)
    materialize(instance, "image_urls", crawled)  # a crawl of two brands
    assert tick() == {"brand_predictions": sorted(crawled)}


def test_automation_waits_while_a_crawl_is_in_progress(automation):
    """A brand whose crawl run is in progress (planned, not yet materialized) is not predicted until it finished."""
    defs, instance = automation
    tick = Ticks(defs, instance)
    for key in ("image_urls", "brand_predictions"):
        materialize(instance, key, BRANDS)
    materialize(instance, "production_model")
    assert tick() == {}  # the first tick: up to date
    instance.create_run_for_job(defs.resolve_job_def("crawl_job"), run_config={}, tags={"dagster/partition": "levis"})
    materialize(instance, "production_model")  # a promotion while levis is being crawled
    assert tick() == {"brand_predictions": sorted(set(BRANDS) - {"levis"})}


def test_cli_materializes_a_partition_range_in_one_run(tmp_path, demo_shop_url, trained_model):
    """`dg launch --assets brand_predictions --partition-range` over all brands, as the README shows, against the demo
    shop."""
    env = platform_env(tmp_path, demo_shop_url)
    items, images = catalogue_items(demo_shop_url, BRANDS[:3], per_brand=4)
    with warehouse.connect(env["FIC_DUCKDB"]) as con:
        warehouse.upsert_items(con, items)
    artifact.promote(trained_model, "cli-v1", {"f1": 1.0}, root=Path(env["FIC_MODELS_DIR"]))
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("brands", list(BRANDS[:3]))
    completed = subprocess.run(
        dg_command("launch", "--assets", "brand_predictions", "--partition-range", f"{BRANDS[0]}...{BRANDS[2]}"),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert len(instance.get_runs()) == 1
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT brand_slug) FROM predictions").fetchone() == (len(images), 3)


# --- the write-back and its readers, without a model ----------------------------------------------------------


def test_written_predictions_replace_the_old_ones_and_are_read_back_by_label(tmp_path):
    """Bad input: the same images predicted twice (a new model version) and an image that could not be scored (no
    score, an error), among image URLs with a quote, a slash and unicode (Levi's "501" / Ève)."""
    import pandas as pd

    from fic_assets.defs.predictions.predict import prediction_labels, predictions_by_label, write_predictions

    urls = ["http://shop/img/levis-'501'.jpg", "http://shop/img/\"501\"/ève.jpg", "http://shop/img/missing.jpg"]
    item = {"item_id": "LE1", "sku": "LE1", "name": 'Levi\'s "501" / Ève', "brand": "Levi's", "brand_slug": "levis", "price": 99.0,
            "currency": "EUR", "colour": "blue", "url": "http://shop/le1.html",
            "images": [{"url": url, "position": n, "is_packshot": False} for n, url in enumerate(urls)]}

    def predictions(version: str, labels: list[str]) -> pd.DataFrame:
        return pd.DataFrame({
            "image_url": urls, "item_id": "LE1", "brand_slug": "levis", "label": labels,
            "score": [0.9 if label == "worn" else 0.2 if label == "not_worn" else None for label in labels],
            "error": [None if label != "error" else "download: HTTP 404" for label in labels],
            "model_version": version, "predicted_at": warehouse.utcnow(),
        })

    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_items(con, [item])
        write_predictions(con, predictions("v1", ["worn", "worn", "error"]))
        write_predictions(con, predictions("v2", ["worn", "not_worn", "error"]))
        assert sorted(prediction_labels(con)) == sorted(zip(urls, ["worn", "not_worn", "error"]))
        assert predictions_by_label(con) == {"error": 1, "not_worn": 1, "worn": 1}
        assert con.execute("SELECT DISTINCT model_version FROM predictions").fetchall() == [("v2",)]
        assert dict(con.execute("SELECT image_url, flag_model FROM images").fetchall()) == dict(zip(urls, [1, 0, -1]))


def test_partition_ranges_group_neighbours_in_partition_order():
    from fic_assets.demo.run import partition_ranges

    ordered = ["a", "b", "c", "d", "e"]
    assert partition_ranges(ordered, set(ordered)) == [("a", "e")]
    assert partition_ranges(ordered, {"b", "d", "e"}) == [("b", "b"), ("d", "e")]
    assert partition_ranges(ordered, set()) == []
