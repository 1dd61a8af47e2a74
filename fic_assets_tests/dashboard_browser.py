"""The analysts' dashboard in real Chromium: what test_demo_photos' whole demo run checks on the dashboard that
`fic demo` leaves running, over that run's own snapshot (real photos served by the demo shop): the overview with
its table and a CSV download equal to what is on screen, one brand with its thumbnails loaded, the model page.
Screenshots: test-artifacts/dashboard-*.png (a failure: dashboard-failure.png)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fic_assets.dashboard import views
from fic_assets.defs.analytics import summary
from fic_assets.defs.analytics.snapshot import open_snapshot
from fic_assets_tests.test_ui_browser import ARTIFACTS, CHROMIUM, failure_screenshot, playwright_for

SCREENSHOTS = {
    "overview": ARTIFACTS / "dashboard-overview.png",
    "brand": ARTIFACTS / "dashboard-brand.png",
    "model": ARTIFACTS / "dashboard-model.png",
    "failure": ARTIFACTS / "dashboard-failure.png",
}
TIMEOUT_MS = 60_000


def check_dashboard_in_chromium(url: str, snapshot: Path, image_prefix: str) -> None:
    """Browse the dashboard at `url` as an analyst would; its numbers are checked against `snapshot` (the folder
    it serves), the thumbnails' sources against `image_prefix` (where the browser loads the images from)."""
    expect, sync_playwright = playwright_for(SCREENSHOTS)
    with open_snapshot(snapshot) as snap:
        overview = summary.brand_overview(snap)
        model = snap.model or {}
    expected = views.overview_table(views.filter_overview(overview))
    # The brand with the most predicted images: its Worn tab has thumbnails to load.
    busiest = overview.sort_values("predicted", ascending=False, kind="stable").iloc[0]
    assert busiest["predicted"] > 0, "the demo run predicted no image"
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

            page.goto(f"{url}/?page=brand&brand={busiest['slug']}")
            expect(page.get_by_role("heading", name=str(busiest["name"]), exact=True)).to_be_visible()
            thumbnails = page.locator("[data-testid='stImage'] img")
            expect(thumbnails.first).to_be_visible()
            page.wait_for_function(
                """() => { const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
                           return imgs.length > 0 && imgs.every(img => img.complete && img.naturalWidth > 0); }""")
            sources = thumbnails.evaluate_all("imgs => imgs.map(img => img.src)")
            assert sources and all(src.startswith(image_prefix) and "imwidth=300" in src for src in sources), sources
            page.screenshot(path=str(SCREENSHOTS["brand"]), full_page=True)

            page.goto(f"{url}/?page=model")
            expect(page.get_by_role("heading", name="Model", exact=True)).to_be_visible()
            # exact: the caveat paragraph above the metrics quotes the version and F1 too, so a substring match finds
            # two elements once the metrics have rendered (strict mode), one if it looks before they have
            expect(page.get_by_text(str(model["version"]), exact=True)).to_be_visible()
            cv = model["cv"]
            expect(page.get_by_text(f"{cv['f1']:.3f} ± {cv['f1_std']:.3f}", exact=True)).to_be_visible()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SCREENSHOTS["model"]), full_page=True)
            assert page.locator("[data-testid='stException']").count() == 0
        except BaseException:
            failure_screenshot(page, SCREENSHOTS["failure"])
            raise
        finally:
            browser.close()
