"""Smoke test of benchmarks/scale.py at a tiny size: it runs end to end and records sane numbers.

No timing assertions: speed is the benchmark's business (README, Benchmarks). Most of the run is importing
the code location (torch, timm) and matplotlib's first report, not the tiny data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SIZES = {"brands": 5, "pieces": 60, "images": 170}

SENSOR_TICKS = (
    "brand_sensor_all_new_ms", "brand_sensor_no_new_ms", "brand_sensor_cursor_current_ms",
    "automation_all_stale_ms", "automation_report_stale_ms", "automation_up_to_date_ms", "automation_one_brand_crawled_ms",
    "relabel_sensor_ms",
)
QUERIES = (
    "brand_query_middle_cold_ms", "images_to_predict_middle_new_model_warm_ms",
    "images_to_predict_middle_same_model_warm_ms", "image_counts_middle_warm_ms",
    "brand_query_biggest_cold_ms", "images_to_predict_biggest_new_model_warm_ms",
    "images_to_predict_biggest_same_model_warm_ms", "image_counts_biggest_warm_ms",
    "write_snapshot_ms", "open_snapshot_ms", "open_snapshot_and_overview_ms", "brand_overview_ms", "write_report_ms",
    "dashboard_first_render_ms", "dashboard_render_cached_ms",
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict:
    results = tmp_path_factory.mktemp("scale-results")
    committed = BENCHMARKS / "results" / "scale.json"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FIC_", "DAGSTER_HOME"))}
    completed = subprocess.run(
        [sys.executable, "scale.py", *(f"--{key}={value}" for key, value in SIZES.items()),
         "--labels=60", "--repeat=1", "--results-dir", str(results)],
        cwd=BENCHMARKS, env=env, capture_output=True, text=True, timeout=240,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert (committed.stat().st_mtime_ns if committed.exists() else None) == before  # the README's numbers stay
    files = list(results.iterdir())
    assert [path.name for path in files] == ["scale.json"]
    return json.loads(files[0].read_text(encoding="utf-8"))


def test_counts_are_the_requested_sizes(recorded):
    assert recorded["benchmark"] == "scale"
    for key, value in SIZES.items():
        assert recorded[key] == value
        assert recorded[f"db_{key}"] == value
    # Most images have a prediction (fake labels), some have a human label, price history has the first prices.
    assert 0 < recorded["db_predictions"] <= SIZES["images"]
    assert recorded["db_labels"] == 60 and recorded["labels_since_round"] == 60
    assert recorded["db_price_history"] == SIZES["pieces"]
    assert 0 < recorded["packshot_images"] < SIZES["images"]
    # brands + per brand (pieces, image_urls, brand_predictions twice) + model twice, snapshot and report twice each,
    # label_tasks, and one brand's crawl (image_urls)
    assert recorded["instance_events"] == 1 + 4 * SIZES["brands"] + 8
    assert recorded["snapshot_rows"]["brand_summary"] == SIZES["brands"]
    assert recorded["snapshot_rows"]["images"] == SIZES["images"] and recorded["snapshot_rows"]["pieces"] == SIZES["pieces"]
    assert recorded["query_brand_middle"]["images"] > 0
    assert recorded["query_brand_biggest"]["images"] >= recorded["query_brand_middle"]["images"]


def test_every_timing_is_recorded_and_positive(recorded):
    timings = recorded["timings"]
    for key in (*SENSOR_TICKS, *QUERIES):
        assert timings[key]["runs"] >= 1, key
        assert 0 < timings[key]["median_ms"] <= timings[key]["max_ms"], key
    for key in ("upsert_items_s", "write_predictions_s", "generate_duckdb_s", "report_events_s"):
        assert timings[key] > 0, key


def test_targets_are_named_beside_the_numbers(recorded):
    targets = recorded["targets"]
    assert set(SENSOR_TICKS) <= set(targets)
    assert all(targets[key]["target_ms"] == 1000 for key in SENSOR_TICKS)
    assert targets["images_to_predict_middle_new_model_warm_ms"]["target_ms"] == 100
    assert targets["write_snapshot_ms"]["target_ms"] == targets["open_snapshot_and_overview_ms"]["target_ms"] == 5000
    assert all(isinstance(goal["met"], bool) for goal in targets.values())
