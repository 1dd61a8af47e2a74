"""The dashboard in real Chromium against a running `fic dashboard --background` on a small real snapshot whose
images are the demo shop's (served for real): the overview with its table and a CSV download equal to what is on
screen, one brand with its thumbnails loaded, the model page. Screenshots: test-artifacts/dashboard-*.png."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from fic_assets.dashboard import server, views
from fic_assets.defs.analytics import summary
from fic_assets.defs.analytics.snapshot import open_snapshot, write_snapshot
from fic_assets.platform import warehouse
from fic_assets_tests.conftest import free_port
from fic_assets_tests.test_analytics import MODEL
from fic_assets_tests.test_brand_report import brand, piece, predict
from fic_assets_tests.test_ui_browser import ARTIFACTS, CHROMIUM, failure_screenshot, playwright_for

SCREENSHOTS = {
    "overview": ARTIFACTS / "dashboard-overview.png",
    "brand": ARTIFACTS / "dashboard-brand.png",
    "model": ARTIFACTS / "dashboard-model.png",
    "failure": ARTIFACTS / "dashboard-failure.png",
}
TIMEOUT_MS = 60_000
BRANDS = 3
PRODUCTS_PER_BRAND = 5


def demo_shop_snapshot(root, shop_url: str):
    """The demo shop's first brands with a few products each, their images predicted as the shop's truth says
    (scores spread, so some are unsure), written by the real write_snapshot."""
    from fic_assets.demo.shop.catalogue import build_catalogue, truth_rows

    rows = [row for row in truth_rows(build_catalogue(42), shop_url) if not row["defect"] and not row["page_defect"]]
    by_brand: dict[str, list[dict]] = {}
    for row in rows:
        by_brand.setdefault(row["brand"], []).append(row)
    chosen = sorted(by_brand)[:BRANDS]
    with warehouse.connect(root / "fic.duckdb") as con:
        for index, name in enumerate(chosen):
            slug = f"brand-{index}"
            warehouse.upsert_brands(con, [brand(slug, name)])
            items: dict[str, list[tuple[str, bool]]] = {}
            for row in by_brand[name]:
                if row["item_id"] in items or len(items) < PRODUCTS_PER_BRAND:
                    items.setdefault(row["item_id"], []).append((row["image_url"], row["is_packshot"]))
            warehouse.upsert_items(con, [piece(item_id, slug, 20.0 + 7 * n, "EUR", ("schwarz", "navy", "hellgrau meliert")[n % 3], images)
                                         for n, (item_id, images) in enumerate(items.items())])
            for n, row in enumerate(r for r in by_brand[name] if r["item_id"] in items):
                predict(con, row["image_url"], row["truth"], brand_slug=slug)
                score = (0.97 - 0.08 * (n % 5)) if row["truth"] == "worn" else (0.03 + 0.08 * (n % 5))
                con.execute("UPDATE predictions SET score = ? WHERE image_url = ?", [score, row["image_url"]])
        write_snapshot(con, root / "analytics", model=MODEL)
    return root / "analytics"


@pytest.mark.browser
def test_dashboard_in_chromium_overview_brand_thumbnails_model_and_download(tmp_path, demo_shop_url):
    expect, sync_playwright = playwright_for(SCREENSHOTS)
    snapshot = demo_shop_snapshot(tmp_path, demo_shop_url)
    port = free_port()
    env = {**os.environ, "FIC_DATA_DIR": str(tmp_path / "data")}
    fic = [sys.executable, "-m", "fic_assets.cli", "dashboard", "--port", str(port)]
    started = subprocess.run([*fic, "--background", "--snapshot", str(snapshot)], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url == f"http://127.0.0.1:{port}"
    with open_snapshot(snapshot) as snap:
        overview = summary.brand_overview(snap)
    expected = views.overview_table(views.filter_overview(overview))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)  # the first render loads the snapshot
            try:
                page.goto(url)
                expect(page.get_by_role("heading", name="Brand overview")).to_be_visible()
                expect(page.locator("[data-testid='stDataFrame']")).to_be_visible()
                expect(page.get_by_text("Worn share (all shown)")).to_be_visible()
                page.wait_for_timeout(1000)  # the data grid paints its canvas after it is attached
                page.screenshot(path=str(SCREENSHOTS["overview"]), full_page=True)
                with page.expect_download() as download_info:
                    page.get_by_role("button", name="Download CSV").click()
                downloaded = download_info.value
                assert downloaded.suggested_filename == "brand-overview.csv"
                csv = pd.read_csv(downloaded.path())
                assert list(csv["brand"]) == list(expected["brand"]) and list(csv.columns) == list(expected.columns)
                assert csv["worn share %"].tolist() == pytest.approx(expected["worn share %"].tolist(), nan_ok=True)

                slug = overview["slug"].iloc[0]
                page.goto(f"{url}/?page=brand&brand={slug}")
                expect(page.get_by_role("heading", name=overview["name"].iloc[0])).to_be_visible()
                thumbnails = page.locator("[data-testid='stImage'] img")
                expect(thumbnails.first).to_be_visible()
                page.wait_for_function(
                    """() => { const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
                               return imgs.length > 0 && imgs.every(img => img.complete && img.naturalWidth > 0); }""")
                sources = thumbnails.evaluate_all("imgs => imgs.map(img => img.src)")
                assert sources and all(src.startswith(demo_shop_url) and "imwidth=300" in src for src in sources)
                page.screenshot(path=str(SCREENSHOTS["brand"]), full_page=True)

                page.goto(f"{url}/?page=model")
                expect(page.get_by_role("heading", name="Model", exact=True)).to_be_visible()
                expect(page.get_by_text("0.900 ± 0.030")).to_be_visible()
                page.wait_for_timeout(1000)
                page.screenshot(path=str(SCREENSHOTS["model"]), full_page=True)
                assert page.locator("[data-testid='stException']").count() == 0
            except BaseException:
                failure_screenshot(page, SCREENSHOTS["failure"])
                raise
            finally:
                browser.close()
    finally:
        subprocess.run([*fic, "--stop"], env=env, capture_output=True, text=True, timeout=60)
    assert not server.healthy(url)
