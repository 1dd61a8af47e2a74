"""The static brand report from a real analytics snapshot of a real DuckDB file: hand-computed numbers, hostile names,
edge cases, Chromium."""

from __future__ import annotations

import math
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fic_assets.platform import warehouse
from fic_assets.defs.analytics import summary as numbers
from fic_assets.defs.analytics.snapshot import open_snapshot, write_snapshot
from fic_assets.defs.reports.brand_report import PLOT_FILES, write_report
from fic_assets_tests.conftest import require

CHROMIUM = os.environ.get("FIC_CHROMIUM", "/usr/bin/chromium")
GENERATED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)

HOSTILE_NAMES = {
    "levis": "Levi's",
    "selected-femme-homme": "Selected Femme/Homme",
    "eve-sohne": "Ève & Söhne",
    "script-alert": "<script>alert(1)</script>",
    "say-hi": 'Say "Hi"',
    "kesha": "Ke$ha $x^2$",  # dollars would be matplotlib mathtext if the plot labels did not escape them
}


def piece(item_id: str, brand_slug: str, price=None, currency=None, colour=None, images=()) -> dict:
    return {
        "item_id": item_id, "sku": item_id, "name": f"Piece {item_id}", "brand": brand_slug,
        "brand_slug": brand_slug, "price": price, "currency": currency, "colour": colour,
        "url": f"https://shop.example/p/{item_id}",
        "images": [{"url": url, "position": position, "is_packshot": packshot}
                   for position, (url, packshot) in enumerate(images)],
    }


def brand(slug: str, name: str) -> dict:
    return {"slug": slug, "name": name, "url": f"https://shop.example/{slug}/"}


def predict(con, image_url: str, label: str, version: str = "v1", brand_slug: str = "x") -> None:
    """A prediction row as the platform writes it, with images.flag_model mirroring it."""
    score = {"worn": 0.9, "not_worn": 0.1}.get(label)
    con.execute(
        """INSERT INTO predictions (image_url, item_id, brand_slug, label, score, error, model_version, predicted_at)
           VALUES (?, (SELECT item_id FROM images WHERE image_url = ?), ?, ?, ?, ?, ?, ?)""",
        [image_url, image_url, brand_slug, label, score, "download: HTTP 404" if label == "error" else None,
         version, GENERATED],
    )
    con.execute("UPDATE images SET flag_model = ? WHERE image_url = ?",
                [{"worn": 1, "not_worn": 0}.get(label, -1), image_url])


def seed_small(con) -> None:
    """Alpha: 4 pieces, 4 images (3 predicted, 1 error); Beta: prices but no images; Gamma: no prices;
    Delta and aardvark: no pieces at all; a piece of an unknown brand and a prediction of an unknown image."""
    warehouse.upsert_brands(con, [brand("alpha", "Alpha"), brand("beta", "Beta"), brand("gamma", "Gamma"),
                                brand("delta", "Delta"), brand("aardvark", "aardvark")])
    warehouse.upsert_items(con, [
        piece("a1", "alpha", 10.0, "EUR", "black", [("u1", True), ("u2", False)]),
        piece("a2", "alpha", 20.0, "EUR", "white", [("u3", True), ("u4", False)]),
        piece("a3", "alpha", 40.0, "USD", "black"),
        piece("a4", "alpha", None, None, "red"),
        piece("b1", "beta", 5.0, "EUR"),
        piece("b2", "beta", 7.0, "EUR", "  "),  # a blank colour is no colour
        piece("g1", "gamma", None, None, "green", [("g-img", True)]),
        piece("orphan", "not-a-brand", 999.0, "EUR", "pink", [("o-img", False)]),
    ])
    predict(con, "u1", "not_worn", "v2")
    predict(con, "u2", "worn", "v2")
    predict(con, "u3", "worn", "v1")
    predict(con, "u4", "error", "v2")
    predict(con, "g-img", "not_worn", "v2")
    predict(con, "o-img", "worn", "v9")
    # A stale prediction of an image the shop no longer lists must not count for anyone.
    con.execute(
        """INSERT INTO predictions (image_url, item_id, brand_slug, label, score, error, model_version, predicted_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        ["gone", "a1", "alpha", "worn", 0.8, None, "v0", GENERATED],
    )


NO_MODEL = {"version": None, "message": "no production model"}


def snapshot_of(con, root: Path, model: dict | None = None):
    """A snapshot of the warehouse behind con, written under root and opened (model.json: `model`, default none)."""
    write_snapshot(con, root / "analytics", model=model or NO_MODEL)
    return open_snapshot(root / "analytics")


def brand_summary(con, root: Path, model: dict | None = None):
    with snapshot_of(con, root, model) as snapshot:
        return numbers.brand_overview(snapshot)


def report_of(con, root: Path, out: Path, model: dict | None = None, **options):
    with snapshot_of(con, root, model) as snapshot:
        return write_report(snapshot, out, **options)


def png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


def table_rows(html: str) -> int:
    return len(re.findall(r'<tr class="brand-row">', html))


def test_summary_numbers_by_hand_with_missing_prices_images_and_predictions(tmp_path: Path):
    """Bad input: brands without images / prices / pieces, an error prediction, a blank colour, a piece of an
    unknown brand and a prediction of an unknown image; every number is compared with a hand-computed value."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        summary = brand_summary(con, tmp_path)

    # Most pieces first, then name case-insensitively (aardvark before Delta); no row for the unknown brand.
    assert list(summary["slug"]) == ["alpha", "beta", "gamma", "aardvark", "delta"]
    rows = {row["slug"]: row for row in summary.to_dict("records")}

    alpha = rows["alpha"]
    assert (alpha["name"], alpha["pieces"], alpha["images"], alpha["predicted"], alpha["errors"]) == ("Alpha", 4, 4, 3, 1)
    assert alpha["worn_share"] == pytest.approx(2 / 3)  # u2, u3 worn of u1, u2, u3
    # Prices 10, 20, 40 (a4 has none), linear quantiles: p25 = 10 + 0.5 * 10, p75 = 20 + 0.5 * 20.
    assert [alpha[c] for c in ("price_min", "price_p25", "price_median", "price_p75", "price_max")] == \
        pytest.approx([10.0, 15.0, 20.0, 30.0, 40.0])
    assert alpha["currency"] == "EUR"  # 2 EUR against 1 USD
    assert alpha["top_colours"] == "black 2, red 1, white 1"  # the 1-1 tie alphabetical
    assert alpha["packshot_flags"] == 2  # u1 not_worn, u3 worn
    assert alpha["packshot_agreement"] == pytest.approx(0.5)
    assert alpha["model_versions"] == "v1, v2"  # not v0 of the image that is gone
    # No production model: the share is the model's own count, its interval that of the brand's 3 images alone.
    assert not alpha["worn_share_corrected"] and alpha["worn_share_raw"] == alpha["worn_share"]
    assert 0.1 < alpha["worn_share_low"] < 2 / 3 < alpha["worn_share_high"] < 1.0

    beta = rows["beta"]
    assert (beta["pieces"], beta["images"], beta["predicted"], beta["errors"], beta["packshot_flags"]) == (2, 0, 0, 0, 0)
    assert math.isnan(beta["worn_share"]) and math.isnan(beta["packshot_agreement"])
    assert [beta[c] for c in ("price_min", "price_p25", "price_median", "price_p75", "price_max")] == \
        pytest.approx([5.0, 5.5, 6.0, 6.5, 7.0])
    assert beta["currency"] == "EUR" and beta["top_colours"] == "" and beta["model_versions"] == ""

    gamma = rows["gamma"]
    assert (gamma["pieces"], gamma["images"], gamma["predicted"], gamma["errors"]) == (1, 1, 1, 0)
    assert gamma["worn_share"] == 0.0 and gamma["packshot_agreement"] == 1.0
    assert all(math.isnan(gamma[c]) for c in ("price_min", "price_p25", "price_median", "price_p75", "price_max"))
    assert pd.isna(gamma["currency"])
    assert gamma["top_colours"] == "green 1" and gamma["model_versions"] == "v2"

    for slug in ("delta", "aardvark"):
        row = rows[slug]
        assert (row["pieces"], row["images"], row["predicted"], row["errors"], row["packshot_flags"]) == (0, 0, 0, 0, 0)
        assert math.isnan(row["worn_share"]) and math.isnan(row["price_median"]) and pd.isna(row["currency"])


def test_top_colours_keeps_five_most_common(tmp_path: Path):
    """Bad input: more colours than the table shows and NULL colours; only the top 5 by count are kept."""
    counts = {"black": 4, "blue": 3, "white": 3, "red": 2, "navy": 2, "olive": 1}
    items, n = [], 0
    for colour, count in counts.items():
        for _ in range(count):
            n += 1
            items.append(piece(f"p{n}", "many", 10.0, "EUR", colour))
    items += [piece("nocolour1", "many", 10.0, "EUR", None), piece("nocolour2", "many", 10.0, "EUR", None)]
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("many", "Many Colours")])
        warehouse.upsert_items(con, items)
        row = brand_summary(con, tmp_path).iloc[0]
    assert row["pieces"] == 17
    assert row["top_colours"] == "black 4, blue 3, white 3, navy 2, red 2"


def test_report_numbers_formatted_for_people(tmp_path: Path):
    """Bad input: missing values everywhere (Delta) must read "—", not nan/None; numbers carry units."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        result = report_of(con, tmp_path, tmp_path / "report", generated_at=GENERATED)
    html = result.index_html.read_text(encoding="utf-8")
    assert result.brands == 5 and table_rows(html) == 5
    assert "2025-03-04 05:06:07 UTC" in html
    assert "v1, v2" in html and "v9" not in html and "v0" not in html  # model versions of listed brands' images
    assert "66.7 %" in html and "50.0 %" in html  # Alpha's worn share and packshot agreement
    assert "20.00 EUR" in html and "15.00–30.00" in html and "6.00 EUR" in html and "5.50–6.50" in html  # median, p25–p75
    totals = html[html.index("<tfoot>"):html.index("</tfoot>")]
    assert "All 5 brands" in totals and "50.0 %" in totals  # the totals row has a worn share: 2 of 4 predicted
    assert "No production model is recorded" in html  # the caveat says what the numbers rest on
    assert "black 2, red 1, white 1" in html
    assert "—" in html and not re.search(r"\b(nan|None|NaN)\b", html)
    assert not re.search(r"<script|javascript:|https?://", html), "no JavaScript, no external URLs"
    for name, path in result.plots.items():
        assert path == tmp_path / "report" / PLOT_FILES[name]
        png_ok(path)
        assert f'src="{PLOT_FILES[name]}"' in html  # relative: the folder can be moved


def test_hostile_brand_names_escaped_in_html_and_intact_in_summary(tmp_path: Path):
    """Bad input: brand names with quotes, slashes, ampersands, unicode, `$` (mathtext) and a <script> tag."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand(slug, name) for slug, name in HOSTILE_NAMES.items()])
        warehouse.upsert_items(con, [
            piece(f"{slug}-1", slug, 19.99, "EUR", "black", [(f"{slug}-img", True)]) for slug in HOSTILE_NAMES
        ])
        for slug in HOSTILE_NAMES:
            predict(con, f"{slug}-img", "worn", brand_slug=slug)
        summary = brand_summary(con, tmp_path)
        result = report_of(con, tmp_path, tmp_path / "report", generated_at=GENERATED)

    assert dict(zip(summary["slug"], summary["name"])) == HOSTILE_NAMES
    html = result.index_html.read_text(encoding="utf-8")
    assert "<script" not in html  # not the brand's, and the page has none of its own
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Levi&#39;s" in html and "Say &#34;Hi&#34;" in html
    assert "Ève &amp; Söhne" in html and "Selected Femme/Homme" in html
    assert "Ke$ha $x^2$" in html
    assert table_rows(html) == len(HOSTILE_NAMES)
    for path in result.plots.values():
        png_ok(path)


def test_empty_database_writes_a_report_saying_no_brands(tmp_path: Path):
    """Bad input: a database with the schema only (no brands, pieces, images or predictions)."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        summary = brand_summary(con, tmp_path)
        result = report_of(con, tmp_path, tmp_path / "report", generated_at=GENERATED)
    assert summary.empty and list(summary.columns) == list(numbers.OVERVIEW_COLUMNS)
    assert result.brands == 0 and result.summary.empty
    html = result.index_html.read_text(encoding="utf-8")
    assert "No brands yet" in html and table_rows(html) == 0
    assert "no predictions yet" in html
    for path in result.plots.values():  # written anyway, so a stale plot of an older run cannot linger
        png_ok(path)


def test_plots_survive_one_brand_with_only_errors_and_no_prices(tmp_path: Path):
    """Bad input: a single brand whose every prediction is an error and whose pieces have no price or colour."""
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, [brand("solo", "Solo")])
        warehouse.upsert_items(con, [piece("s1", "solo", images=[("s-a", True), ("s-b", False)]),
                                   piece("s2", "solo", images=[("s-c", False)])])
        for url in ("s-a", "s-b", "s-c"):
            predict(con, url, "error", brand_slug="solo")
        result = report_of(con, tmp_path, tmp_path / "report", generated_at=GENERATED)
    row = result.summary.iloc[0]
    assert (row["pieces"], row["images"], row["predicted"], row["errors"], row["packshot_flags"]) == (2, 3, 0, 3, 0)
    assert math.isnan(row["worn_share"]) and math.isnan(row["price_max"]) and row["top_colours"] == ""
    assert "All 1 brand." in result.index_html.read_text(encoding="utf-8")
    for path in result.plots.values():
        png_ok(path)


def test_many_brands_table_lists_all_plots_show_top(tmp_path: Path):
    """Bad input: more brands (60) than a plot can show (max_plot_brands=10)."""
    brands = [brand(f"brand-{i:02d}", f"Brand {i:02d}") for i in range(60)]
    # brand-i has i + 1 pieces, so the plotted top 10 are brand-59 .. brand-50.
    items = [piece(f"b{i}-{k}", f"brand-{i:02d}", 10.0 + k, "EUR", ("black", "white", "navy")[k % 3])
             for i in range(60) for k in range(i + 1)]
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        warehouse.upsert_brands(con, brands)
        warehouse.upsert_items(con, items)
        result = report_of(con, tmp_path, tmp_path / "report", generated_at=GENERATED, max_plot_brands=10)
        few = report_of(con, tmp_path, tmp_path / "few", generated_at=GENERATED, max_plot_brands=60)
    html = result.index_html.read_text(encoding="utf-8")
    assert result.brands == 60 and table_rows(html) == 60
    assert all(f"Brand {i:02d}" in html for i in range(60))
    assert html.count("Top 10 of 60 brands by pieces") == 3  # one caption per plot
    assert list(result.summary["slug"][:10]) == [f"brand-{i:02d}" for i in range(59, 49, -1)]
    assert "All 60 brands." in few.index_html.read_text(encoding="utf-8")
    # 10 bars make a shorter plot than 60: the cut really reached the figure.
    assert png_ok(result.plots["worn_share"])[1] < png_ok(few.plots["worn_share"])[1] / 2
    with pytest.raises(ValueError):
        write_report(None, tmp_path / "never", max_plot_brands=0)


def test_rewrite_overwrites_stale_files_atomically(tmp_path: Path):
    """Bad input: a folder holding an older run's (here: garbage) report files; no temp file may remain."""
    out = tmp_path / "report"
    out.mkdir()
    for file in (*PLOT_FILES.values(), "index.html"):
        (out / file).write_bytes(b"stale, half-written")
    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        report_of(con, tmp_path, out, generated_at=GENERATED)
        result = report_of(con, tmp_path, out, generated_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert sorted(p.name for p in out.iterdir()) == sorted([*PLOT_FILES.values(), "index.html"])
    assert "2026-01-01 00:00:00 UTC" in result.index_html.read_text(encoding="utf-8")
    for path in result.plots.values():
        png_ok(path)
        assert path.stat().st_mode & 0o777 == 0o644  # readable by a web server, unlike mkstemp's 0600


@pytest.mark.browser
def test_report_renders_in_real_chromium(tmp_path: Path):
    """Bad input: hostile brand names (incl. <script>alert(1)</script>) and a report folder moved after writing;
    a real headless Chromium must show every name as text, load every plot, fetch nothing remote, run no script."""
    require(Path(CHROMIUM).exists(), f"Debian chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        require(False, f"the playwright package ({error})")

    with warehouse.connect(tmp_path / "fic.duckdb") as con:
        seed_small(con)
        warehouse.upsert_brands(con, [brand(slug, name) for slug, name in HOSTILE_NAMES.items()])
        warehouse.upsert_items(con, [piece(f"{slug}-1", slug, 25.0, "EUR", "navy", [(f"{slug}-img", False)])
                                   for slug in HOSTILE_NAMES])
        for slug in HOSTILE_NAMES:
            predict(con, f"{slug}-img", "not_worn", brand_slug=slug)
        result = report_of(con, tmp_path, tmp_path / "written", generated_at=GENERATED)
        names = list(brand_summary(con, tmp_path)["name"])
    moved = tmp_path / "moved" / "report"
    shutil.copytree(tmp_path / "written", moved)  # relative src: the copy must work on its own
    shutil.rmtree(tmp_path / "written")
    assert len(names) == 5 + len(HOSTILE_NAMES)

    screenshot = Path(__file__).resolve().parents[1] / "test-artifacts" / "brand-report-1400px.png"  # gitignored
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    requests, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # the width the layout must fit
            page.on("request", lambda request: requests.append(request.url))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto((moved / result.index_html.name).as_uri(), wait_until="load")
            text = page.inner_text("body")
            images = page.evaluate(
                "() => Array.from(document.images).map(img => [img.getAttribute('src'), img.complete && img.naturalWidth > 0])"
            )
            scripts = page.evaluate("() => document.scripts.length")
            # Nothing wider than the window: no horizontal scrolling of the page or of the table's own box.
            widths = page.evaluate("""() => [document.documentElement.scrollWidth,
                                             document.querySelector('.table-wrap').scrollWidth,
                                             document.querySelector('.table-wrap').clientWidth]""")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    missing = [name for name in names if name not in text]
    assert not missing, f"brand names not shown as text: {missing}"
    assert sorted(src for src, _ in images) == sorted(PLOT_FILES.values())
    assert all(loaded for _, loaded in images), f"plots that did not load: {images}"
    assert scripts == 0 and dialogs == []
    assert widths[0] <= 1400 and widths[1] <= widths[2], f"the report overflows 1400 px: {widths}"
    assert requests and all(url.startswith("file://") for url in requests), requests
    with Image.open(screenshot) as shot:
        shot.load()
        assert shot.width >= 1400 and shot.height > 900  # full page: the table runs past one screen
        rgb = shot.convert("RGB")
        colours = rgb.getcolors(maxcolors=4096)  # None: more than 4096 colours, certainly not blank
        assert colours is None or len(colours) > 1
        assert any(low != high for low, high in rgb.getextrema())
