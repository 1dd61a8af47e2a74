"""The analysts' dashboard (fic_assets/dashboard/) on snapshots written by the real `write_snapshot` from real small
DuckDB files, through Streamlit's AppTest (the script run as a browser session would, every page): the numbers on
screen are the shared summary functions', the filters and sort, the examples with their Label Studio links, and
bad input: no snapshot yet, an empty snapshot, a brand with no predictions, a brand named `Levi's "501" / Ève`, a
missing thumbnail URL (each a message, never a traceback). The CLI: `fic dashboard --background` / `--stop`, a bad
--snapshot, a busy port. In real Chromium, on a whole demo run: test_demo_photos.py (dashboard_browser.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from fic_assets.dashboard import server, views
from fic_assets.defs.analytics import summary
from fic_assets.defs.analytics.snapshot import open_snapshot, write_snapshot
from fic_assets.platform import processes, warehouse
from fic_assets_tests.conftest import free_port
from fic_assets_tests.test_analytics import HOSTILE, MODEL
from fic_assets_tests.test_brand_report import brand, piece, predict, seed_small

APP = str(Path(server.APP))
TIMEOUT = 60
LS_TASK = "http://ls.example:8080/projects/7/data?task=42"


def small_snapshot(root: Path, categories: dict[str, str] | None = None) -> Path:
    """seed_small's brands (Alpha with predictions, Beta without images, Gamma without prices, Delta and aardvark
    without pieces), plus a brand with real http thumbnails, an open Label Studio task and a price change.
    categories: {item_id: category} for the pieces that have one (none by default, as before the shop gave one)."""
    with warehouse.connect(root / "fic.duckdb") as con:
        seed_small(con)
        warehouse.upsert_brands(con, [brand("zeta", "Zeta")])
        warehouse.upsert_items(con, [piece("z1", "zeta", 30.0, "EUR", "dunkelblau",
                                           [("https://img.example/z1.jpg?imwidth=1800", False),
                                            ("https://img.example/z1-pack.jpg?imwidth=1800", True)]),
                                     piece("z2", "zeta", 60.0, "EUR", "navy", [("https://img.example/z2.jpg", False)])])
        warehouse.upsert_items(con, [piece("z2", "zeta", 55.0, "EUR", "navy", [("https://img.example/z2.jpg", False)])])
        predict(con, "https://img.example/z1.jpg?imwidth=1800", "worn", brand_slug="zeta")
        predict(con, "https://img.example/z1-pack.jpg?imwidth=1800", "not_worn", brand_slug="zeta")
        predict(con, "https://img.example/z2.jpg", "worn", brand_slug="zeta")
        con.execute("UPDATE predictions SET score = 0.55 WHERE image_url = 'https://img.example/z2.jpg'")
        con.execute("""INSERT INTO label_projects (project_key, project_id, ls_url, first_seen, last_seen, is_current)
                       VALUES (1, 7, 'http://ls.example:8080/', now(), now(), true)""")
        con.execute("""INSERT INTO label_tasks (project_key, task_id, image_url, project_id, created_at)
                       VALUES (1, 42, 'https://img.example/z2.jpg', 7, now())""")
        for item_id, category in (categories or {}).items():
            con.execute("UPDATE pieces SET category = ?, category_path = ? WHERE item_id = ?", [category, category, item_id])
        write_snapshot(con, root / "analytics", model=MODEL)
    return root / "analytics"


@pytest.fixture
def snapshot(tmp_path, monkeypatch) -> Path:
    path = small_snapshot(tmp_path)
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(path))
    return path


def app(page: str | None = None, **params: str) -> AppTest:
    test = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if page:
        test.query_params["page"] = page
    for key, value in params.items():
        test.query_params[key] = value
    return test.run()


def no_traceback(test: AppTest) -> None:
    assert not test.exception, [e.value for e in test.exception]
    assert not test.error, [e.value for e in test.error]


def texts(elements) -> list[str]:
    return [str(element.value) for element in elements]


def test_overview_shows_the_summary_numbers_filters_and_sorts(snapshot):
    test = app()
    no_traceback(test)
    assert texts(test.title) == ["Brand overview"]
    with open_snapshot(snapshot) as snap:
        overview = summary.brand_overview(snap)
        caveat = summary.model_caveat(snap.model)
        totals = summary.overview_totals(snap, overview)
    assert caveat in texts(test.caption)
    shown = test.dataframe[0].value
    expected = views.overview_table(views.filter_overview(overview))
    assert list(shown["brand"]) == list(expected["brand"]) == list(overview["name"])
    alpha = shown.set_index("slug").loc["alpha"]
    row = overview.set_index("slug").loc["alpha"]
    assert alpha["worn share %"] == round(row["worn_share"] * 100, 1)
    assert (alpha["interval low %"], alpha["interval high %"]) == (round(row["worn_share_low"] * 100, 1),
                                                                   round(row["worn_share_high"] * 100, 1))
    assert alpha["price median"] == row["price_median"] and alpha["pieces"] == 4
    metrics = {m.label: m.value for m in test.metric}
    assert metrics["Worn share (all shown)"] == summary.format_share(totals["worn_share"])
    assert metrics["Brands shown"] == f"{len(overview)} of {len(overview)}"
    # seed_small's pieces have no category: no category filter, and a note why.
    assert "No piece in this snapshot has a category (the shop's pages gave none): no category filter." in texts(test.sidebar.caption)
    assert not [m for m in test.sidebar.multiselect if m.key == "filter_categories"]
    assert {b.proto.label for b in test.get("download_button")} == {"Download CSV", "Download Parquet"}

    test.sidebar.multiselect(key="filter_brands").set_value(["zeta", "gamma"]).run()
    no_traceback(test)
    assert list(test.dataframe[0].value["slug"]) == ["zeta", "gamma"]  # most pieces first
    test.sidebar.selectbox(key="sort").set_value("worn share, lowest first").run()
    assert list(test.dataframe[0].value["slug"]) == ["gamma", "zeta"]
    test.sidebar.multiselect(key="filter_brands").set_value([]).run()
    test.sidebar.slider(key="filter_price").set_value((25.0, 43.0)).run()  # medians: beta 6, alpha 20, zeta 42.5 (range 6-43)
    no_traceback(test)
    assert list(test.dataframe[0].value["slug"]) == ["zeta"]
    test.sidebar.slider(key="filter_price").set_value((7.0, 8.0)).run()
    assert "No brand matches these filters." in texts(test.warning)


def test_brand_page_shows_examples_with_label_studio_links_prices_and_colours(snapshot):
    test = app("brand", brand="zeta")
    no_traceback(test)
    assert texts(test.subheader) == ["Zeta"]
    metrics = {m.label: m.value for m in test.metric}
    with open_snapshot(snapshot) as snap:
        row = views.brand_row(summary.brand_overview(snap), "zeta")
        history = summary.price_history(snap, "zeta")
    assert metrics["Worn share"] == summary.format_share(row["worn_share"])
    assert metrics["95 % interval"] == summary.format_interval(row["worn_share_low"], row["worn_share_high"])
    assert metrics["Packshot flag agrees"] == "100.0 %"  # the one packshot is predicted not worn
    urls = [image.url for element in test.get("image") for image in element.proto.imgs]
    # Thumbnails at THUMBNAIL_WIDTH where the URL has an imwidth; worn (2), not worn (1), least certain (3).
    assert urls.count("https://img.example/z1.jpg?imwidth=300") == 2 and "https://img.example/z2.jpg" in urls
    assert len(urls) == 6
    links = [b.proto.url for b in test.get("link_button")]
    assert links == [LS_TASK, LS_TASK]  # the least-sure worn image, under Worn and under Least certain
    frames = [frame.value for frame in test.dataframe]
    prices = next(frame for frame in frames if "price_median" in frame.columns)
    assert prices["price_median"].tolist() == history["price_median"].tolist() and len(prices) >= 1
    colours = next(frame for frame in frames if "shop's words" in frame.columns)
    assert colours.to_dict("records") == [{"colour": "navy", "pieces": 2, "shop's words": "dunkelblau, navy"}]
    # The brand box switches brands and keeps the URL shareable.
    test.selectbox(key="brand").set_value("gamma").run()
    no_traceback(test)
    assert texts(test.subheader) == ["Gamma"] and test.query_params["brand"] == "gamma"


def test_links_use_the_public_addresses_the_browser_reaches(snapshot, monkeypatch):
    """In the compose stack the snapshot's links name container hosts (label-studio, demo-shop): with
    FIC_DASHBOARD_PUBLIC_URLS the thumbnails and Label Studio buttons point where the analyst's browser reaches them;
    a URL under no prefix (a real shop's image host, a longer port) stays as stored."""
    monkeypatch.setenv(views.PUBLIC_URLS_VARIABLE, "http://ls.example:8080=http://127.0.0.1:18080/ls, "
                                                   "https://img.example=http://127.0.0.1:8765/")
    test = app("brand", brand="zeta")
    no_traceback(test)
    assert [b.proto.url for b in test.get("link_button")] == ["http://127.0.0.1:18080/ls/projects/7/data?task=42"] * 2
    urls = [image.url for element in test.get("image") for image in element.proto.imgs]
    assert urls.count("http://127.0.0.1:8765/z1.jpg?imwidth=300") == 2 and len(urls) == 6
    assert all(url.startswith("http://127.0.0.1:8765/") for url in urls)
    prefixes = views.public_url_prefixes({views.PUBLIC_URLS_VARIABLE: "http://demo-shop:8765=http://127.0.0.1:8765"})
    assert views.public_url("http://demo-shop:87650/x.jpg", prefixes) == "http://demo-shop:87650/x.jpg"
    assert views.public_url("https://img01.ztat.net/a.jpg", prefixes) == "https://img01.ztat.net/a.jpg"
    assert views.public_url(None, prefixes) is None


@pytest.mark.parametrize("value", ["http://label-studio:8080", "label-studio:8080=http://127.0.0.1:8080",
                                   "http://label-studio:8080=127.0.0.1:8080"])
def test_malformed_public_urls_stop_the_start_with_a_clear_error(value, monkeypatch, capsys):
    """Bad input: FIC_DASHBOARD_PUBLIC_URLS without "=", or a side that is not an http(s) URL: `fic dashboard`
    exits 2 naming the variable and the entry, before it starts anything."""
    monkeypatch.setenv(views.PUBLIC_URLS_VARIABLE, value)
    assert server.main(["--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert views.PUBLIC_URLS_VARIABLE in error and repr(value) in error


def test_model_page_shows_version_f1_spread_labels_and_confusion_matrix(snapshot):
    test = app("model")
    no_traceback(test)
    metrics = {m.label: m.value for m in test.metric}
    assert metrics == {"Production version": "m1", "Cross-validated F1": "0.900 ± 0.030", "Labels used": "200"}
    matrix = test.dataframe[0].value
    assert matrix.to_dict("records") == [{"truth": "worn", "model: worn": 90, "model: not worn": 10},
                                         {"truth": "not worn", "model: worn": 20, "model: not worn": 80}]
    numbers = dict(zip(*test.dataframe[1].value.to_dict("list").values()))
    assert numbers["sensitivity"] == "0.9" and numbers["specificity"] == "0.8"
    assert numbers["labels used: worn"] == "100"


def test_sidebar_switches_pages(snapshot):
    test = app()
    test.sidebar.radio(key="page").set_value("model").run()
    no_traceback(test)
    assert texts(test.title) == ["Model"] and test.query_params["page"] == "model"


def test_no_snapshot_yet_says_how_to_make_one(tmp_path, monkeypatch):
    """Bad input: FIC_ANALYTICS_DIR names a folder no snapshot was written to."""
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(tmp_path / "nothing-here"))
    for page in ("overview", "brand", "model"):
        test = app(page)
        no_traceback(test)
        assert len(test.info) == 1 and test.info[0].value.startswith("No analytics snapshot yet.")
        assert "materialize `analytics_snapshot`" in test.info[0].value


def test_empty_snapshot_says_there_are_no_brands_yet(tmp_path, monkeypatch):
    """Bad input: a snapshot of a warehouse with the schema only, without a production model."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        write_snapshot(con, tmp_path / "analytics", model={"version": None, "message": "no production model yet"})
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(tmp_path / "analytics"))
    overview = app()
    no_traceback(overview)
    assert texts(overview.info)[0].startswith("The snapshot has no brands yet")
    assert not overview.dataframe
    brand_page = app("brand")
    no_traceback(brand_page)
    assert texts(brand_page.info) == ["The snapshot has no brands yet: nothing to show per brand."]
    model = app("model")
    no_traceback(model)
    assert texts(model.info) == ["no production model yet"]


def test_hostile_brand_without_predictions_and_missing_thumbnails(tmp_path, monkeypatch):
    """Bad input: a brand named `Levi's "501" / Ève` whose images were never predicted (asked for in the URL), and a
    brand whose predicted images have an empty URL and a file:// URL (no thumbnail)."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("levis-501-eve", HOSTILE), brand("plain", "Plain *Sale*")])
        warehouse.upsert_items(con, [
            piece("h1", "levis-501-eve", 99.0, "EUR", "hellgrau meliert", [("https://img.example/h1.jpg", False)]),
            piece("p1", "plain", 20.0, "EUR", "Schwarz", [("", False), ("file:///etc/passwd", True)]),
        ])
        predict(con, "", "worn", brand_slug="plain")
        predict(con, "file:///etc/passwd", "not_worn", brand_slug="plain")
        write_snapshot(con, tmp_path / "analytics", model=MODEL)
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(tmp_path / "analytics"))

    hostile = app("brand", brand="levis-501-eve")
    no_traceback(hostile)
    assert texts(hostile.subheader) == [views.escape_markdown(HOSTILE)]
    assert hostile.selectbox(key="brand").value == "levis-501-eve"
    assert any(text.startswith("No predictions for this brand yet (1 images, 0 failed)") for text in texts(hostile.info))
    assert "No image of this brand is predicted worn." in texts(hostile.caption)
    metrics = {m.label: m.value for m in hostile.metric}
    assert metrics["Worn share"] == "—" and metrics["95 % interval"] == "—"

    plain = app("brand", brand="plain")
    no_traceback(plain)
    warnings = texts(plain.warning)
    assert "No thumbnail URL for this image (P(worn) 0.90): its URL is empty" in warnings
    assert ("No thumbnail URL for this image (P(worn) 0.10 · shop packshot): `file:///etc/passwd` is no http(s) URL"
            in warnings)

    overview = app()
    no_traceback(overview)
    assert set(overview.dataframe[0].value["brand"]) == {HOSTILE, "Plain *Sale*"}  # table cells are plain text


def test_unknown_brand_in_the_url_falls_back_to_the_first(snapshot):
    """Bad input: ?brand= names no brand of the snapshot (a stale link)."""
    test = app("brand", brand="no-such-brand")
    no_traceback(test)
    assert texts(test.subheader) == ["Alpha"]


def fic(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fic_assets.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_starts_in_the_background_reports_the_url_and_stops(tmp_path, monkeypatch):
    """Bad input too: --snapshot naming no directory, a port another program holds."""
    snapshot = small_snapshot(tmp_path)
    port = free_port()
    env = {**os.environ, "FIC_DATA_DIR": str(tmp_path / "data")}
    monkeypatch.setenv("FIC_DATA_DIR", env["FIC_DATA_DIR"])  # this process finds the same pid file

    missing = fic("dashboard", "--snapshot", str(tmp_path / "nope"), "--background", env=env)
    assert missing.returncode == 2 and "--snapshot" in missing.stderr and "no such directory" in missing.stderr

    try:
        started = fic("dashboard", "--background", "--port", str(port), "--snapshot", str(snapshot), env=env)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        assert started.stdout.strip() == url
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as answer:
            assert answer.read() == b"ok"
        record = processes.recorded(server.pid_file(port))
        assert record is not None and record.url == url
        assert "--server.address" in record.command and record.command[record.command.index("--server.address") + 1] == "127.0.0.1"
        again = fic("dashboard", "--background", "--port", str(port), env=env)  # already running: the same URL
        assert again.returncode == 0 and again.stdout.strip() == url
        foreground = fic("dashboard", "--port", str(port), env=env)  # the port is ours now: busy for a second one
        assert foreground.returncode == 1 and f"port {port} on 127.0.0.1 is busy" in foreground.stderr
    finally:
        stopped = fic("dashboard", "--stop", "--port", str(port), env=env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"stopped the dashboard on {url}"
    assert not server.pid_file(port).exists() and not server.healthy(url)
    nothing = fic("dashboard", "--stop", "--port", str(port), env=env)
    assert nothing.returncode == 0 and nothing.stdout.startswith(f"no background dashboard running for port {port}")


def test_a_new_snapshot_shows_on_the_next_run_and_the_old_one_can_be_pruned(snapshot):
    """A snapshot written while the dashboard runs: the next interaction reads it, and the old one is closed, so
    prune (which never deletes a snapshot a reader holds open) can delete it."""
    from fic_assets.defs.analytics.snapshot import SNAPSHOTS, current_version, prune

    test = app()
    first = current_version(snapshot)
    assert f"Snapshot {first}" in " ".join(texts(test.sidebar.caption))
    with warehouse.connect(snapshot.parent / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("newcomer", "Newcomer")])
        written = write_snapshot(con, snapshot, model=MODEL, grace_seconds=0)
    assert first not in written.removed  # the dashboard holds it open
    assert prune(snapshot, grace_seconds=0) == []
    test.run()
    no_traceback(test)
    assert f"Snapshot {written.version}" in " ".join(texts(test.sidebar.caption))
    assert "newcomer" in set(test.dataframe[0].value["slug"])
    assert prune(snapshot, grace_seconds=0) == [first]  # closed once the dashboard moved on
    assert not (snapshot / SNAPSHOTS / first).exists()


def same_table(shown: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The table on screen is `expected` (Streamlit hands a missing currency back as NaN, not None)."""
    assert [None if pd.isna(c) else c for c in shown["currency"]] == [None if pd.isna(c) else c for c in expected["currency"]]
    pd.testing.assert_frame_equal(shown.drop(columns="currency"), expected.drop(columns="currency"), check_dtype=False)


CATEGORIES = {"a1": "Damen", "a2": "Herren", "z1": "Damen", "z2": "Herren", "b1": HOSTILE}


def test_category_filter_recomputes_the_overview_and_works_with_brand_and_price_filters(tmp_path, monkeypatch):
    """Bad input: a category named `Levi's "501" / Ève`, pieces without a category. The filter offers every category
    (and "no category given"), all by default; choosing one shows every brand's numbers over only those pieces,
    recomputed by summary.brand_overview, and the brand and price band filters narrow that further."""
    root = small_snapshot(tmp_path, CATEGORIES)
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(root))
    test = app()
    no_traceback(test)
    box = test.sidebar.multiselect(key="filter_categories")
    assert box.value == [] and box.options == ["Damen (2 pieces)", "Herren (2 pieces)", f"{HOSTILE} (1 pieces)",
                                               "no category given (5 pieces)"]
    with open_snapshot(root) as snap:
        overview = summary.brand_overview(snap)
        damen = summary.brand_overview(snap, ["Damen"])
        damen_totals = summary.overview_totals(snap, damen, ["Damen"])
        hostile = summary.brand_overview(snap, [HOSTILE, summary.NO_CATEGORY])
    assert list(test.dataframe[0].value["slug"]) == list(overview["slug"])  # all: the unfiltered overview

    box.set_value(["Damen"]).run()
    no_traceback(test)
    shown = test.dataframe[0].value
    same_table(shown, views.overview_table(views.filter_overview(damen)))
    assert list(shown["slug"]) == ["alpha", "zeta"] and list(shown["pieces"]) == [1, 1]
    zeta, whole = shown.set_index("slug").loc["zeta"], overview.set_index("slug").loc["zeta"]
    assert zeta["price median"] == 30.0 and whole["price_median"] == 42.5  # z1 alone, not z1 and z2
    assert zeta["worn share %"] != round(whole["worn_share"] * 100, 1)  # z1: one worn, one not; z2 (worn) left out
    metrics = {m.label: m.value for m in test.metric}
    assert metrics["Worn share (all shown)"] == summary.format_share(damen_totals["worn_share"])
    assert metrics["95 % interval"] == summary.format_interval(damen_totals["worn_share_low"], damen_totals["worn_share_high"])
    assert metrics["Brands shown"] == f"2 of {len(overview)}"

    # Together with the brand filter and the price band (brand medians within Damen: alpha 10, zeta 30).
    test.sidebar.multiselect(key="filter_brands").set_value(["zeta", "beta"]).run()
    assert list(test.dataframe[0].value["slug"]) == ["zeta"]  # beta has no Damen piece
    test.sidebar.multiselect(key="filter_brands").set_value([]).run()
    test.sidebar.slider(key="filter_price").set_value((6.0, 20.0)).run()
    no_traceback(test)
    assert list(test.dataframe[0].value["slug"]) == ["alpha"]
    test.sidebar.slider(key="filter_price").set_value((6.0, 43.0)).run()

    box = test.sidebar.multiselect(key="filter_categories")
    box.set_value([HOSTILE, summary.NO_CATEGORY]).run()
    no_traceback(test)
    same_table(test.dataframe[0].value, views.overview_table(views.filter_overview(hostile)))
    assert test.dataframe[0].value.set_index("slug").loc["beta", "pieces"] == 2  # b1 (HOSTILE) and b2 (none)
    test.sidebar.multiselect(key="filter_categories").set_value([]).run()
    assert list(test.dataframe[0].value["slug"]) == list(overview["slug"])


def test_snapshot_written_before_categories_shows_the_overview_without_a_category_filter(tmp_path, monkeypatch):
    """Bad input: a snapshot from the code before categories (pieces without `category` / `category_path`,
    brand_summary without `top_categories`, a manifest that lists neither): the overview shows, with a note."""
    import duckdb
    import json

    root = small_snapshot(tmp_path, CATEGORIES)
    with open_snapshot(root) as snap:
        folder = snap.path
    con = duckdb.connect()
    for table, dropped in (("pieces", "category, category_path"), ("brand_summary", "top_categories")):
        path = folder / f"{table}.parquet"
        con.execute(f"COPY (SELECT * EXCLUDE ({dropped}) FROM read_parquet(?)) TO ? (FORMAT parquet)", [str(path), str(path) + ".old"])
        (folder / f"{table}.parquet.old").replace(path)
    con.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["tables"].values():
        entry["columns"] = [c for c in entry["columns"] if c not in ("category", "category_path", "top_categories")]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("FIC_ANALYTICS_DIR", str(root))
    test = app()
    no_traceback(test)
    assert "No piece in this snapshot has a category (the shop's pages gave none): no category filter." in texts(test.sidebar.caption)
    shown = test.dataframe[0].value
    assert len(shown) > 0 and set(shown["top categories"]) == {""}
