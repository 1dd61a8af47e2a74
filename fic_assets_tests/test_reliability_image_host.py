"""Reliability of predictions against the image host, for real (the demo shop behind a proxy, a trained model,
the predictions domain in process): a host failing half the time or cutting transfers short is retried and
recorded, and a corrupt image cache entry is fetched again and predicts as before."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.reliability import ShopProxy, error_chain


# --- 4. an image host failing half the time ---------------------------------------------------------------------


PREDICT_BRANDS = ("levis", "jack-jones")  # a truncated JPEG, a decompression bomb, a CMYK JPEG, a PNG with alpha among them


class Predictions:
    """The predictions domain on a DuckDB holding the first products of two brands, whose images come through proxy."""

    def __init__(self, proxy: ShopProxy, trained_model: Path, tmp_path: Path, monkeypatch, per_brand: int = 12):
        from fic_assets.definitions import domain_defs
        from fic_assets.defs.model import artifact
        from fic_assets_tests.test_predictions import brand_rows, catalogue_items

        self.db = tmp_path / "fic.duckdb"
        self.cache_dir = tmp_path / "cache"
        monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
        monkeypatch.setenv("FIC_IMAGE_CACHE_DIR", str(self.cache_dir))
        self.items, self.images = catalogue_items(proxy.url, PREDICT_BRANDS, per_brand=per_brand)  # image URL -> catalogue image
        with warehouse.connect(self.db) as con:
            warehouse.upsert_brands(con, brand_rows(self.items))
            warehouse.upsert_items(con, self.items)
        artifact.promote(trained_model, "reliability-v1", {"f1": 1.0})
        self.defs = dg.Definitions.merge(domain_defs("predictions", "reports"), dg.Definitions(resources={"duckdb": DuckDBResource(path=str(self.db))}))

    def run(self, instance) -> dg.ExecuteInProcessResult:
        tags = {"dagster/asset_partition_range_start": PREDICT_BRANDS[0], "dagster/asset_partition_range_end": PREDICT_BRANDS[-1]}
        return self.defs.resolve_job_def("predict_job").execute_in_process(instance=instance, tags=tags, raise_on_error=False)

    def stored(self) -> dict[str, tuple]:
        with warehouse.connect(self.db, read_only=True) as con:
            return {url: rest for url, *rest in con.execute("SELECT image_url, label, score, error, predicted_at FROM predictions").fetchall()}

    def healthy(self) -> set[str]:
        """Images a working host serves as decodable pictures (CMYK and PNG-alpha included: converted, not rejected)."""
        return {url for url, image in self.images.items() if image.defect in (None, "cmyk", "png_alpha")}


@pytest.fixture
def predictions_instance():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("brands", list(PREDICT_BRANDS))
        yield instance


def refusals(path: str) -> int:
    """How many times the flaky host answers 503 for a path before serving it: 0-3, fixed by the path's hash."""
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % 4


def test_image_host_failing_half_the_time_retries_records_and_the_next_run_fills_the_rest(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: an image host that answers 503 to about half of the requests: each image URL is refused 0 to
    3 times (by a hash of its path) before it is served, so the download retries (3 tries per run) save most
    of them within the run and the rest fail for this run only. The demo shop's broken images are there too.

    brand_predictions over two brands completes; what still failed is stored as `error` with its reason; the
    next run tries only those again, and in the end every healthy image has a prediction."""
    with ShopProxy(demo_shop_url, lambda kind, path, n: 503 if kind == "image" and n <= refusals(path) else None) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch)
        healthy = platform.healthy()
        path_of = {url: url.split(proxy.url, 1)[1] for url in platform.images}
        gave_up = {url for url in healthy if refusals(path_of[url]) == 3}  # refused more often than a run tries
        saved = {url for url in healthy if refusals(path_of[url]) in (1, 2)}  # refused, then served on a retry
        assert gave_up and saved

        first = platform.run(predictions_instance)
        assert first.success
        asked, refused = proxy.count("image"), proxy.count("image", failed=True)
        assert refused >= 0.4 * asked, (refused, asked)  # the host really failed about half the time
        after_first = platform.stored()
        assert after_first.keys() == set(platform.images)  # every image has a row: a label or a recorded failure
        assert all(after_first[url][0] in ("worn", "not_worn") for url in saved)  # the retries turned these into successes
        assert {after_first[url][2] for url in gave_up} == {"download: HTTP 503"}  # recorded, with the reason
        metadata = first.asset_materializations_for_node("brand_predictions")[0].metadata
        missing = sum(image.defect == "missing" for image in platform.images.values())  # the shop's own 404s, final
        assert metadata["error_reasons"].value["download"] == len(gave_up) + missing

        second = platform.run(predictions_instance)
        assert second.success
        metadata = second.asset_materializations_for_node("brand_predictions")[0].metadata
        first_errors = {url for url, row in after_first.items() if row[0] == "error"}
        assert metadata["predicted"].value == len(first_errors)  # only the failures were tried again
        final = platform.stored()
        assert {url for url, row in final.items() if row[0] in ("worn", "not_worn")} == healthy
        assert not any("503" in (row[2] or "") for row in final.values())
        assert {url: row for url, row in final.items() if url not in first_errors} == {url: row for url, row in after_first.items() if url not in first_errors}
        # One request for each refused image (the host had recovered); the broken ones came from the cache.
        assert proxy.count("image") - asked == len(gave_up)


def test_image_host_cutting_every_other_transfer_short_is_retried(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: an image host that drops the connection in the middle of every other image body (headers and
    half the bytes sent, then closed), as a flaky CDN or proxy does. A retry gets the whole image.

    brand_predictions must complete with a prediction for every healthy image."""
    with ShopProxy(demo_shop_url, lambda kind, path, n: "cut" if kind == "image" and n % 2 == 1 else None) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch, per_brand=3)
        result = platform.run(predictions_instance)
        error = "" if result.success else error_chain(next(e for e in result.all_events if e.is_step_failure).step_failure_data.error)
        assert result.success, error
        assert proxy.count("image", failed=True) >= len(platform.images)  # every image was cut once
        stored = platform.stored()
        assert {url for url, row in stored.items() if row[0] in ("worn", "not_worn")} == platform.healthy()


# --- 6. a corrupt file in the image cache ------------------------------------------------------------------------


def test_corrupt_image_cache_entries_are_fetched_again_and_predict_as_before(demo_shop_url, trained_model, tmp_path, monkeypatch, predictions_instance):
    """Bad input: after a predictions run, three entries of the shared image cache are damaged: one image file
    overwritten with random bytes of the same length (bit rot, a stray edit), one cut to half its length (a crash
    or a full disk), one checksum sidecar that is no longer JSON.

    A newly promoted model (same weights, new version) re-predicts every image from the cache: the damaged
    entries are detected and fetched again from the shop (seen at a counting proxy), nothing else is, and every
    image gets the same prediction as before, none a spurious "truncated" or "not an image"."""
    from fic_assets.defs.dataset.cache import ImageCache
    from fic_assets.defs.model import artifact
    from fic_assets_tests.test_predictions import new_version_of

    with ShopProxy(demo_shop_url) as proxy:
        platform = Predictions(proxy, trained_model, tmp_path, monkeypatch, per_brand=6)
        assert platform.run(predictions_instance).success
        before = platform.stored()
        requests = proxy.count("image")
        assert requests == len(platform.images)  # each image fetched once, then cached

        cache = ImageCache(platform.cache_dir)
        garbage, halved, bad_sidecar = damaged = sorted(platform.healthy())[:3]
        original = {url: cache.get(url) for url in damaged}
        assert all(original.values())
        cache.data_path(garbage).write_bytes(os.urandom(len(original[garbage])))
        cache.data_path(halved).write_bytes(original[halved][: len(original[halved]) // 2])
        cache.sidecar_path(bad_sidecar).write_text("{not json", encoding="utf-8")

        artifact.promote(new_version_of(trained_model, tmp_path / "v2", "reliability-v2"), "reliability-v2", {"f1": 1.0})
        result = platform.run(predictions_instance)
        assert result.success
        assert result.asset_materializations_for_node("brand_predictions")[0].metadata["predicted"].value == len(platform.images)
        hits = {path: n for (kind, path), n in proxy.hits.items() if kind == "image"}
        assert proxy.count("image") - requests == 3  # only the damaged entries were fetched again...
        assert [hits[url.split(proxy.url, 1)[1]] for url in damaged] == [2, 2, 2]  # ...each once more

    after = platform.stored()
    assert after.keys() == before.keys()
    for url, (label, score, error, _) in before.items():
        new_label, new_score, new_error, _ = after[url]
        assert (new_label, new_error) == (label, error), (url, platform.images[url].defect, error, new_error)
        assert new_score == pytest.approx(score, abs=1e-6) if score is not None else new_score is None
    assert {url: ImageCache(platform.cache_dir).get(url) for url in damaged} == original  # the cache is whole again
