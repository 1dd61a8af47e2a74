"""The analytics snapshot and its summary functions, on real DuckDB files, real Parquet and a real Dagster instance:
the snapshot's content, its atomic replacement under a reading thread, bad input (an empty warehouse, a brand
without predictions, a brand named `Levi's "501" / Ève`, missing thumbnail URLs), the worn-share correction by
hand, the colour vocabulary, and the report's numbers against the summary functions'."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fic_assets.defs.analytics import summary
from fic_assets.defs.analytics.colours import FAMILIES, OTHER, colour_family
from fic_assets.defs.analytics.snapshot import (
    CURRENT, SNAPSHOTS, TABLES, SnapshotNotFound, SnapshotSourceError, model_info, open_snapshot, parquet_bytes,
    prune, write_snapshot,
)
from fic_assets.defs.model import artifact
from fic_assets.defs.reports.brand_report import write_report
from fic_assets.platform import warehouse
from fic_assets_tests.test_brand_report import GENERATED, brand, piece, predict, seed_small

MODEL = {  # model.json as write_snapshot records a production model (see test_model_info_reads_the_production_card)
    "version": "m1", "cv": {"f1": 0.9, "f1_std": 0.03, "n": 200, "folds": 5, "repeats": 3},
    "confusion_matrix": {"tp": 90, "fn": 10, "tn": 80, "fp": 20}, "labels_used": {"worn": 100, "not_worn": 100},
}
HOSTILE = 'Levi\'s "501" / Ève'


def snapshot_dir(tmp_path: Path) -> Path:
    return tmp_path / "analytics"


def test_snapshot_holds_every_table_and_model_json(tmp_path: Path):
    """The snapshot's content against the warehouse: rows and columns of each table, colour families beside the shop's
    words, thumbnails, human labels and Label Studio task links, price history, model.json, the manifest."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        warehouse.upsert_items(con, [piece("a1", "alpha", 12.0, "EUR", "black",
                                           [("https://img.example/a1.jpg?imwidth=1800&filter=packshot", True)])])
        con.execute("""INSERT INTO label_projects (project_key, project_id, ls_url, first_seen, last_seen, is_current)
                       VALUES (1, 7, 'http://ls.example:8080/', now(), now(), true)""")
        con.execute("""INSERT INTO label_tasks (project_key, task_id, image_url, project_id, created_at)
                       VALUES (1, 42, 'u2', 7, now()), (1, 43, 'u3', 7, now())""")
        con.execute("UPDATE label_tasks SET retired_at = now() WHERE task_id = 43")  # a retired task is no link
        con.execute("""INSERT INTO labels (image_url, item_id, label, annotated_at, task_id, annotation_id, annotations, agreement)
                       VALUES ('u2', 'a1', 'worn', now(), 42, 1, 1, 1.0)""")
        counts = warehouse.table_counts(con)
        written = write_snapshot(con, snapshot_dir(tmp_path), model=MODEL)

    assert (snapshot_dir(tmp_path) / CURRENT).read_text().strip() == written.version
    with open_snapshot(snapshot_dir(tmp_path)) as snap:
        assert snap.version == written.version and snap.path == written.path and snap.model == MODEL
        assert set(snap.tables) == set(TABLES)
        for table in ("brands", "pieces", "images", "price_history", "colours"):
            assert list(snap.table(table).columns) == list(TABLES[table]), table
        assert list(snap.table("brand_summary").columns) == list(summary.OVERVIEW_COLUMNS)
        assert written.rows["brands"] == counts["brands"] and written.rows["pieces"] == counts["pieces"]
        assert written.rows["price_history"] == counts["price_history"] == 9  # 8 pieces, a1's price moved once
        # Images of known pieces only ("gone" has a prediction but no image row); each with its piece's brand.
        images = snap.table("images").set_index("image_url")
        assert len(images) == 7 and written.rows["images"] == 7
        assert images.loc["o-img", "brand_slug"] == "not-a-brand" and images.loc["u4", "label"] == "error"
        assert images.loc["u4", "error"] == "download: HTTP 404" and math.isnan(images.loc["u4", "score"])
        assert images.loc["u1", "certainty"] == pytest.approx(0.8)  # |0.1 - 0.5| * 2
        packshot = "https://img.example/a1.jpg?imwidth=1800&filter=packshot"
        assert images.loc[packshot, "thumbnail_url"] == "https://img.example/a1.jpg?imwidth=300&filter=packshot"
        assert pd.isna(images.loc[packshot, "label"])  # not predicted yet
        assert images.loc["u2", "human_label"] == "worn"
        assert images.loc["u2", "label_studio_task_url"] == "http://ls.example:8080/projects/7/data?task=42"
        assert images["label_studio_task_url"].notna().sum() == 1
        pieces = snap.table("pieces").set_index("item_id")
        assert (pieces.loc["a1", "colour"], pieces.loc["a1", "colour_family"], pieces.loc["a1", "price"]) == ("black", "black", 12.0)
        assert pieces.loc["a1", "brand_name"] == "Alpha" and pd.isna(pieces.loc["b2", "colour_family"])
        history = snap.sql("SELECT price FROM price_history WHERE item_id = 'a1' ORDER BY seen_at")["price"].tolist()
        assert history == [10.0, 12.0]
        # brand_summary is summary.brand_overview of this very snapshot.
        stored, computed = snap.table("brand_summary"), summary.brand_overview(snap)
        pd.testing.assert_frame_equal(stored.drop(columns="currency"), computed.drop(columns="currency"), check_dtype=False)
        assert [None if pd.isna(c) else c for c in stored["currency"]] == [None if pd.isna(c) else c for c in computed["currency"]]
    manifest = json.loads((written.path / "manifest.json").read_text())
    assert manifest["version"] == written.version and manifest["model_version"] == "m1"
    assert {table: entry["rows"] for table, entry in manifest["tables"].items()} == written.rows
    assert json.loads((written.path / "model.json").read_text()) == MODEL


def test_model_info_reads_the_production_card(tmp_path: Path):
    """model.json from a promoted model's card (what training writes): CV F1 and spread, folds, labels used, the
    confusion matrix with sensitivity and specificity; and without a production model, a message saying how to get one."""
    card = {"version": "v7", "arch": "tf_efficientnet_lite0", "trained_at": "2026-12-01T10:00:00+00:00", "threshold": 0.5,
            "class_counts_train": {"worn": 60, "not_worn": 40},
            "metrics": {"f1": 0.97, "f1_std": 0.02, "f1_min": 0.93, "f1_max": 1.0, "cv_folds": 5, "cv_repeats": 3, "n": 100,
                        "accuracy": 0.96, "precision": 0.97, "recall": 0.97, "roc_auc": 0.99, "tp": 58, "fn": 2, "tn": 38, "fp": 2}}
    models = tmp_path / "models"
    assert model_info(models_root=models)["version"] is None
    assert "no production model" in model_info(models_root=models)["message"]
    artifact.write_card(tmp_path / "v7", card) if (tmp_path / "v7").mkdir() is None else None
    artifact.promote(tmp_path / "v7", "v7", {"f1": 0.97, "f1_std": 0.02}, root=models)
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        info = model_info(con, models_root=models)
    assert info["version"] == "v7" and info["arch"] == "tf_efficientnet_lite0"
    assert info["cv"]["f1"] == 0.97 and info["cv"]["f1_std"] == 0.02 and info["cv"]["n"] == 100
    assert (info["cv"]["folds"], info["cv"]["repeats"]) == (5, 3)
    assert info["confusion_matrix"] == {"tp": 58, "fp": 2, "tn": 38, "fn": 2}
    assert info["sensitivity"] == pytest.approx(58 / 60) and info["specificity"] == pytest.approx(38 / 40)
    assert info["labels_used"] == {"worn": 60, "not_worn": 40}
    assert info["predictions_by_version"] == {"v0": 1, "v1": 1, "v2": 4, "v9": 1}
    caveat = summary.model_caveat(info)
    assert "F1 0.970 ± 0.020 (5 folds × 3 repeats)" in caveat and "100 labelled images (60 worn, 40 not worn)" in caveat


def test_reader_during_rewrites_sees_the_old_or_the_new_snapshot_never_a_mix(tmp_path: Path):
    """Bad input: a reader that opens the snapshot in a loop while a writer replaces it 6 times (each time with one
    more brand, the old ones deleted at once: grace 0). Every snapshot read must be whole and consistent."""
    root = snapshot_dir(tmp_path)
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("b00", "B 00")])
        warehouse.upsert_items(con, [piece("p00", "b00", 10.0, "EUR", "schwarz", [("i00", False)])])
        write_snapshot(con, root, model=MODEL, grace_seconds=0)
        seen, problems, stop = [], [], threading.Event()

        def read_loop():
            while not stop.is_set():
                try:
                    with open_snapshot(root) as snap:
                        brands = len(snap.table("brands"))
                        rows = {t: len(snap.table(t)) for t in snap.tables}
                        if rows != {t: e["rows"] for t, e in snap.manifest["tables"].items()}:
                            problems.append(("rows differ from the manifest", snap.version, rows))
                        if not (rows["pieces"] == rows["images"] == rows["brand_summary"] == brands):
                            problems.append(("tables of different writes", snap.version, rows))
                        if int(snap.table("brand_summary")["images"].sum()) != rows["images"]:
                            problems.append(("summary of another write", snap.version, rows))
                        seen.append((snap.version, brands))
                except Exception as error:  # noqa: BLE001 - any error is what the test looks for
                    problems.append(("error", repr(error)))

        reader = threading.Thread(target=read_loop)
        reader.start()
        try:
            for n in range(1, 7):
                slug = f"b{n:02d}"
                warehouse.upsert_brands(con, [brand(slug, f"B {n:02d}")])
                warehouse.upsert_items(con, [piece(f"p{n:02d}", slug, 10.0 + n, "EUR", "dunkelblau", [(f"i{n:02d}", True)])])
                write_snapshot(con, root, model=MODEL, grace_seconds=0)
                time.sleep(0.05)
        finally:
            stop.set()
            reader.join(timeout=60)
    assert not problems, problems[:5]
    assert len({version for version, _ in seen}) >= 3, f"the reader saw too few snapshots to mean anything: {seen}"
    brands = [count for _, count in seen]
    assert brands == sorted(brands)  # never an older snapshot after a newer one
    # Grace 0: once no reader holds one (the last write's prune may have met the reader holding the one before:
    # kept, by design), a prune leaves only the current snapshot, and no temp dir of a writer.
    prune(root, grace_seconds=0)
    assert [p.name for p in (root / SNAPSHOTS).iterdir()] == [(root / CURRENT).read_text().strip()]


def test_prune_keeps_replaced_snapshots_for_the_grace_period(tmp_path: Path):
    """Bad input: a dead writer's half-written temp dir, two replaced snapshots (one within its grace period), and a
    replaced snapshot a reader still holds open."""
    root = snapshot_dir(tmp_path)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        first = write_snapshot(con, root, model=MODEL, now=start)
        second = write_snapshot(con, root, model=MODEL, now=start + timedelta(minutes=5))
        third = write_snapshot(con, root, model=MODEL, now=start + timedelta(minutes=30), grace_seconds=3600)
    names = sorted(p.name for p in (root / SNAPSHOTS).iterdir())
    assert names == sorted([first.version, second.version, third.version])  # within the hour: all kept
    (root / SNAPSHOTS / ".tmp-20250101T000000000000Z-dead00").mkdir()
    removed = prune(root, grace_seconds=600, now=start + timedelta(minutes=31))
    # first was replaced at 00:05 (26 min ago): gone; second at 00:30 (1 min ago): kept; the current one stays.
    assert first.version in removed and ".tmp-20250101T000000000000Z-dead00" in removed
    assert sorted(p.name for p in (root / SNAPSHOTS).iterdir()) == sorted([second.version, third.version])
    with open_snapshot(second.path) as old:  # a replaced snapshot is still readable by its own path
        assert old.version == second.version
        # A reader holding it open keeps it, however long past its grace period (prune cannot lock it).
        assert prune(root, grace_seconds=0, now=start + timedelta(hours=5)) == []
        assert len(old.table("brand_summary")) == 0 and (second.path / "manifest.json").exists()
    assert prune(root, grace_seconds=0, now=start + timedelta(hours=5)) == [second.version]  # closed: deleted
    with open_snapshot(root, in_memory=True) as copy:  # a copy in memory holds no lock
        assert copy.version == third.version
        assert prune(root, grace_seconds=0, now=start + timedelta(hours=5)) == []  # nothing older left


def test_empty_warehouse_and_missing_snapshot_give_clear_results(tmp_path: Path):
    """Bad input: a warehouse with the schema only, no snapshot at all, a DuckDB file without the platform's tables."""
    with pytest.raises(SnapshotNotFound, match="no analytics snapshot at .* materialize `analytics_snapshot`"):
        open_snapshot(tmp_path / "nothing-here")
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        written = write_snapshot(con, snapshot_dir(tmp_path), model={"version": None})
    assert set(written.rows.values()) == {0}
    with open_snapshot(snapshot_dir(tmp_path)) as snap:
        overview = summary.brand_overview(snap)
        totals = summary.overview_totals(snap, overview)
        assert overview.empty and totals["name"] == "All 0 brands" and totals["predicted"] == 0
        assert math.isnan(totals["worn_share"]) and math.isnan(totals["price_median"])
        assert summary.price_history(snap, "nobody").empty
        assert all(frame.empty for frame in summary.brand_examples(snap, "nobody").values())
        html = write_report(snap, tmp_path / "report", generated_at=GENERATED).index_html.read_text()
    assert "No brands yet" in html and "All 0 brands" not in html
    import duckdb

    duckdb.connect(str(tmp_path / "foreign.duckdb")).close()
    with duckdb.connect(str(tmp_path / "foreign.duckdb"), read_only=True) as con:
        with pytest.raises(SnapshotSourceError, match="has no table brands, .*materialize `brands`"):
            write_snapshot(con, tmp_path / "never", model=MODEL)
    assert not (tmp_path / "never" / CURRENT).exists()


def test_hostile_brand_without_predictions_and_missing_thumbnails(tmp_path: Path):
    """Bad input: a brand named `Levi's "501" / Ève` whose images were never predicted, one with an empty image URL
    and one that is no http(s) URL (no thumbnail), beside a brand with predictions."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("levis-501-eve", HOSTILE), brand("plain", "Plain")])
        warehouse.upsert_items(con, [
            piece("h1", "levis-501-eve", 99.0, "EUR", "hellgrau meliert", [("", False), ("file:///etc/passwd", True)]),
            piece("p1", "plain", 20.0, "EUR", "Schwarz", [("https://img.example/p1.jpg", False)]),
        ])
        predict(con, "https://img.example/p1.jpg", "worn", brand_slug="plain")
        write_snapshot(con, snapshot_dir(tmp_path), model=MODEL)
    with open_snapshot(snapshot_dir(tmp_path)) as snap:
        overview = summary.brand_overview(snap).set_index("slug")
        hostile = overview.loc["levis-501-eve"]
        assert hostile["name"] == HOSTILE and (hostile["images"], hostile["predicted"]) == (2, 0)
        assert all(math.isnan(hostile[c]) for c in ("worn_share", "worn_share_low", "worn_share_high", "packshot_agreement"))
        assert hostile["top_colours"] == "grey 1"
        assert snap.sql("SELECT brand_name FROM pieces WHERE item_id = 'h1'")["brand_name"][0] == HOSTILE
        images = snap.sql("SELECT image_url, thumbnail_url FROM images WHERE brand_slug = ? ORDER BY image_url", ["levis-501-eve"])
        assert images["image_url"].tolist() == ["", "file:///etc/passwd"] and images["thumbnail_url"].isna().all()
        examples = summary.brand_examples(snap, "levis-501-eve")
        assert all(frame.empty for frame in examples.values())  # nothing predicted: no examples, no error
        plain = summary.brand_examples(snap, "plain")["worn"]
        assert plain["thumbnail_url"].tolist() == ["https://img.example/p1.jpg"]  # no imwidth: the image itself
        report = write_report(snap, tmp_path / "report", generated_at=GENERATED)
    html = report.index_html.read_text(encoding="utf-8")
    assert "Levi&#39;s &#34;501&#34; / Ève" in html and "no predictions" in html
    assert not re.search(r"\b(nan|None|NaN)\b", html)


def test_rogan_gladen_correction_and_interval_by_hand():
    """The worn share corrected for the model's error: Se 0.9, Sp 0.8, apparent share 0.5 -> (0.5 + 0.8 - 1) / 0.7;
    the interval widens with fewer images and with a smaller evaluation set, holds the estimate, and does not depend
    on the other brands listed; a model no better than chance is not used for a correction."""
    errors = summary.ModelErrors(tp=90, fn=10, tn=80, fp=20)
    shares = summary.corrected_worn_share([500, 5, 1000, 0], [1000, 10, 1000, 0], errors)
    assert shares["worn_share"][0] == pytest.approx(0.3 / 0.7)
    assert shares["worn_share_raw"][0] == 0.5 and shares["worn_share_corrected"].all()
    assert shares["worn_share"][2] == 1.0  # all worn: (1 + 0.8 - 1) / 0.7 > 1, clipped
    assert shares["worn_share_high"][2] == 1.0
    assert math.isnan(shares["worn_share"][3]) and math.isnan(shares["worn_share_low"][3])
    width = shares["worn_share_high"] - shares["worn_share_low"]
    assert shares["worn_share_low"][0] < shares["worn_share"][0] < shares["worn_share_high"][0]
    assert width[1] > width[0] * 2  # 10 images say much less than 1,000
    small = summary.corrected_worn_share([500], [1000], summary.ModelErrors(tp=9, fn=1, tn=8, fp=2))
    assert (small["worn_share_high"] - small["worn_share_low"])[0] > width[0] * 1.5  # 20 labelled images: wider
    alone = summary.corrected_worn_share([5], [10], errors)
    assert alone.iloc[0].equals(shares.iloc[1])  # same counts, same numbers, whatever else is listed
    uncorrected = summary.corrected_worn_share([5], [10], None).iloc[0]
    assert uncorrected["worn_share"] == 0.5 and not uncorrected["worn_share_corrected"]
    assert summary.ModelErrors.from_model({"confusion_matrix": {"tp": 5, "fn": 5, "tn": 5, "fp": 5}}) is None  # chance
    assert summary.ModelErrors.from_model({"confusion_matrix": {"tp": 5, "fn": 0, "tn": 0, "fp": 0}}) is None  # one class
    assert summary.ModelErrors.from_model({"version": None}) is None


def test_colour_words_map_to_one_english_vocabulary():
    """Bad input: every colour word of the demo shop, German and English spellings, compounds, blanks and nonsense."""
    from fic_assets.demo.shop.catalogue import COLOURS, DENIM_COLOURS

    expected = {"schwarz": "black", "black": "black", "weiß": "white", "off-white": "white", "dunkelblau": "navy",
                "navy": "navy", "hellgrau meliert": "grey", "bordeaux": "red", "rosa": "pink", "camel": "brown",
                "senf": "yellow", "flieder": "purple", "mint": "green", "dark blue denim": "navy",
                "light-blue denim": "blue", "black denim": "black", "grey denim": "grey", "Dunkelgrün": "green",
                "tiefschwarz": "black", "Schwarz/Weiß": "black", "mehrfarbig": "multicoloured", "HELLBLAU": "blue"}
    for word, family in expected.items():
        assert colour_family(word) == family, word
    for colour in (*COLOURS, *DENIM_COLOURS):  # the demo's words: none left to "other"
        assert colour_family(colour.name) in FAMILIES and colour_family(colour.name) != OTHER, colour.name
    assert colour_family(None) is None and colour_family("   ") is None
    assert colour_family("xq-17") == OTHER and colour_family("¯\\_(ツ)_/¯") == OTHER


def test_report_numbers_equal_the_summary_functions(tmp_path: Path):
    """The report's table cells, brand by brand and the totals row, are the summary functions' numbers formatted."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        write_snapshot(con, snapshot_dir(tmp_path), model=MODEL)
    with open_snapshot(snapshot_dir(tmp_path)) as snap:
        report = write_report(snap, tmp_path / "report", generated_at=GENERATED)
        overview = summary.brand_overview(snap)
        totals = summary.overview_totals(snap, overview)
    html = report.index_html.read_text(encoding="utf-8")
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r'<tr class="(?:brand|totals)-row">(.*?)</tr>', html, re.S)]
    assert len(cells) == len(overview) + 1
    for row, record in zip(cells, [*overview.to_dict("records"), totals]):
        worn = summary.format_share(record["worn_share"]) if record["predicted"] else "no predictions"
        interval = summary.format_interval(record["worn_share_low"], record["worn_share_high"])
        assert row[4] == worn and row[5] == interval and row[6] == summary.format_share(record["worn_share_raw"])
        assert row[1] == f"{record['pieces']:,}" and row[2] == f"{record['images']:,}"
        assert row[7].startswith(summary.format_price(record["price_median"], record["currency"] if isinstance(record["currency"], str) else None))
        assert row[9].startswith(summary.format_share(record["packshot_agreement"]))
        assert row[10] == summary.MISSING  # seed_small's pieces have no category
    # Alpha: 2 worn of 3 with Se 0.9 / Sp 0.8 -> (2/3 + 0.8 - 1) / 0.7 = 66.7 %; the totals row: 2 of 4.
    assert cells[0][4] == "66.7 %" and cells[-1][4] == summary.format_share((0.5 + 0.8 - 1) / 0.7) == "42.9 %"
    assert "F1 0.900 ± 0.030" in html and "200 labelled images" in html


def test_parquet_bytes_round_trip(tmp_path: Path):
    """What a download button offers: the frame on screen as Parquet, read back by DuckDB equal to the frame."""
    import duckdb
    import pandas as pd

    frame = pd.DataFrame({"brand": [HOSTILE, "Plain"], "worn_share": [0.5, float("nan")], "images": [3, 0]})
    (tmp_path / "x.parquet").write_bytes(parquet_bytes(frame))
    back = duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(tmp_path / "x.parquet")]).df()
    assert back["brand"].tolist() == [HOSTILE, "Plain"] and back["images"].tolist() == [3, 0]


def test_asset_writes_the_snapshot_and_the_report_follows_it_in_one_run(tmp_path: Path, monkeypatch):
    """The assets on a real Dagster instance: after settled `pieces` / `brand_predictions`, automation requests
    analytics_snapshot and brand_report in the same tick; the job writes the snapshot from DuckDB (read-only, in the
    duckdb pool) and the report from it. Bad input: the report asset with no snapshot yet fails saying what to do."""
    from fic_assets.definitions import defs as load_defs

    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(tmp_path / "analytics"))
    monkeypatch.setenv("FIC_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FIC_DUCKDB", str(tmp_path / "fic.duckdb"))
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
    defs = load_defs()
    assert defs.resolve_assets_def("analytics_snapshot").op.pool == "duckdb"
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        failed = dg.materialize([defs.resolve_assets_def("brand_report")], instance=instance, raise_on_error=False)
        assert not failed.success
        failure = [e for e in failed.all_events if e.is_step_failure][0]
        assert "no analytics snapshot at" in str(failure.event_specific_data.error.message)

        instance.add_dynamic_partitions("brands", ["alpha", "beta"])
        cursor = None

        def tick():
            nonlocal cursor
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
            cursor = result.cursor
            return {key: result.get_num_requested(dg.AssetKey(key)) for key in ("analytics_snapshot", "brand_report")
                    if result.get_num_requested(dg.AssetKey(key))}

        assert tick() == {}  # the sensor's first tick takes the state it finds as handled
        for key in ("pieces", "brand_predictions"):
            for slug in ("alpha", "beta"):
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=slug))
        assert tick() == {}  # inputs just updated: the snapshot waits a tick for them to settle
        assert tick() == {"analytics_snapshot": 1, "brand_report": 1}  # together: one run

        result = defs.resolve_job_def("report_job").execute_in_process(instance=instance)
        assert result.success
        meta = result.asset_materializations_for_node("analytics_snapshot")[0].metadata
        assert meta["rows"].value["brands"] == 5
        report_meta = result.asset_materializations_for_node("brand_report")[0].metadata
        assert report_meta["snapshot"].value == meta["version"].value
    index = tmp_path / "reports" / "index.html"
    assert "Alpha" in index.read_text(encoding="utf-8")
    with open_snapshot(tmp_path / "analytics") as snap:
        assert snap.version == meta["version"].value and snap.model["version"] is None  # no model promoted here


ODD_CATEGORY = 'Herren "Sale" / Ève\'; DROP TABLE pieces; --'


def categorised_snapshot(tmp_path: Path) -> Path:
    """seed_small with categories: a1 `Damen`, a2 / a3 / b1 ODD_CATEGORY (quotes, unicode, SQL), the rest none."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        con.execute("UPDATE pieces SET category = 'Damen', category_path = 'Damen > Jeans' WHERE item_id = 'a1'")
        con.execute("UPDATE pieces SET category = ?, category_path = ? WHERE item_id IN ('a2', 'a3', 'b1')",
                    [ODD_CATEGORY, ODD_CATEGORY + " > Schuhe"])
        write_snapshot(con, snapshot_dir(tmp_path), model=MODEL)
    return snapshot_dir(tmp_path)


def test_snapshot_pieces_carry_the_category_and_the_overview_filters_by_it(tmp_path: Path):
    """Bad input: a category with quotes, unicode and SQL in it; pieces without any. Filtered by category, every
    number of a brand is recomputed over those pieces and their images only, the worn share and its interval by
    corrected_worn_share from the filtered counts."""
    with open_snapshot(categorised_snapshot(tmp_path)) as snap:
        pieces = snap.table("pieces").set_index("item_id")
        assert (pieces.loc["a1", "category"], pieces.loc["a1", "category_path"]) == ("Damen", "Damen > Jeans")
        assert pieces.loc["b1", "category_path"] == ODD_CATEGORY + " > Schuhe" and pd.isna(pieces.loc["g1", "category"])
        stored = snap.table("brand_summary").set_index("slug")
        assert stored.loc["alpha", "top_categories"] == f"{ODD_CATEGORY} 2, Damen 1"
        assert (stored.loc["beta", "top_categories"], stored.loc["gamma", "top_categories"]) == (f"{ODD_CATEGORY} 1", "")
        counts = summary.category_counts(snap)
        assert [None if pd.isna(c) else c for c in counts["category"]] == [ODD_CATEGORY, "Damen", None]
        assert counts["pieces"].tolist() == [3, 1, 4] and counts["brands"].tolist() == [2, 1, 4]  # None: a4, b2, g1, orphan (not-a-brand)

        errors = summary.ModelErrors.from_model(MODEL)
        damen = summary.brand_overview(snap, ["Damen"])
        assert damen["slug"].tolist() == ["alpha"]  # beta and gamma have no piece in it: left out
        row = damen.iloc[0]
        assert (row["pieces"], row["images"], row["predicted"], row["worn"], row["errors"]) == (1, 2, 2, 1, 0)
        assert (row["price_median"], row["top_colours"], row["top_categories"]) == (10.0, "black 1", "Damen 1")
        expected = summary.corrected_worn_share([1], [2], errors).iloc[0]
        for column in ("worn_share", "worn_share_low", "worn_share_high"):
            assert row[column] == pytest.approx(expected[column]), column
        whole = stored.loc["alpha"]
        assert (whole["predicted"], whole["worn"]) == (3, 2) and row["worn_share"] != pytest.approx(whole["worn_share"])

        odd = summary.brand_overview(snap, [ODD_CATEGORY]).set_index("slug")
        assert odd.index.tolist() == ["alpha", "beta"]
        assert (odd.loc["alpha", "pieces"], odd.loc["alpha", "predicted"], odd.loc["alpha", "errors"]) == (2, 1, 1)
        assert odd.loc["alpha", "price_median"] == 30.0  # a2 20 EUR, a3 40 USD
        both = summary.brand_overview(snap, ["Damen", ODD_CATEGORY])
        totals = summary.overview_totals(snap, both, ["Damen", ODD_CATEGORY])
        assert (totals["pieces"], totals["predicted"], totals["worn"]) == (4, 3, 2)
        assert totals["price_median"] == 15.0  # 5, 10, 20, 40
        pooled = summary.corrected_worn_share([2], [3], errors).iloc[0]
        assert totals["worn_share"] == pytest.approx(pooled["worn_share"])
        # The pieces without a category are a choice of their own; the whole list is the unfiltered overview.
        none = summary.brand_overview(snap, [summary.NO_CATEGORY]).set_index("slug")
        assert none["pieces"].to_dict() == {"alpha": 1, "beta": 1, "gamma": 1}
        assert summary.brand_overview(snap, ["no such category"]).empty
        # The static report lists each brand's top categories, escaped.
        html = write_report(snap, tmp_path / "report", generated_at=GENERATED).index_html.read_text(encoding="utf-8")
        assert "<td class=\"colours\">Herren &#34;Sale&#34; / Ève&#39;; DROP TABLE pieces; -- 2, Damen 1</td>" in html
        every = summary.brand_overview(snap, [*[c for c in counts["category"] if not pd.isna(c)], summary.NO_CATEGORY])
        unfiltered = summary.brand_overview(snap)
        assert every.set_index("slug")["pieces"].to_dict() == unfiltered[unfiltered["pieces"] > 0].set_index("slug")["pieces"].to_dict()
