"""The Dagster UI in a real browser: `dg dev` (webserver + daemon, temp instance) on 127.0.0.1, opened in
Debian's headless Chromium through Playwright. The global asset lineage shows every platform asset by name, and
a person's click on `brands` → Materialize launches a run that the daemon dequeues and that crawls the demo shop's
brand index into DuckDB. Screenshots are kept in test-artifacts/ (gitignored) at the repo root:
ui-asset-graph.png, ui-brands-run.png, ui-brands-materialized.png, and ui-failure.png when a browser step fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from fic_assets.platform import warehouse
from fic_assets_tests.conftest import dg_command, free_port, platform_env, require, stop_process_group, wait_for
from fic_assets_tests.test_dagster_dev import server_up

BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("FIC_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SCREENSHOTS = {
    "graph": ARTIFACTS / "ui-asset-graph.png",
    "run": ARTIFACTS / "ui-brands-run.png",
    "asset": ARTIFACTS / "ui-brands-materialized.png",
    "failure": ARTIFACTS / "ui-failure.png",
}
PLATFORM_ASSETS = ["brands", "pieces", "image_urls", "label_tasks", "human_labels", "image_set", "model",
                   "production_model", "brand_predictions", "brand_report"]
UI_TIMEOUT_MS = 60_000  # every browser step and expect(); the machine may be busy with other jobs
# An asset node of the lineage graph (SVG foreignObject); its name is the whole text of this element.
GRAPH_NODE_NAME = "svg foreignObject [class*='AssetNode_assetName']"


@contextmanager
def dagster_dev(env: dict, cwd: Path):
    """`dg dev` on a free loopback port; yields its URL. Its process group is killed afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = cwd / "dagster_dev.log"
    with log_path.open("wb") as log:
        # Own session: `dg dev` does not reliably exit on SIGTERM/SIGINT, so its whole group is killed.
        server = subprocess.Popen(
            dg_command("dev", "-h", "127.0.0.1", "-p", str(port)),
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd,
        )
        try:
            wait_for(lambda: server.poll() is not None or server_up(url), 150, "dg dev to answer", interval=1)
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            yield url
        finally:
            stop_process_group(server)  # the webserver, daemon, code servers, a run in progress


def log_tail(cwd: Path, chars: int = 3000) -> str:
    return (cwd / "dagster_dev.log").read_text(errors="replace")[-chars:]


def assert_not_blank(path: Path, min_width: int, min_height: int) -> None:
    with Image.open(path) as shot:
        shot.load()
        assert shot.width >= min_width and shot.height >= min_height, (path, shot.size)
        rgb = shot.convert("RGB")
        colours = rgb.getcolors(maxcolors=4096)  # None: more than 4096 colours, certainly not blank
        assert colours is None or len(colours) > 1, f"{path} is one colour"
        assert any(low != high for low, high in rgb.getextrema()), f"{path} is blank"


def finished_run(env: dict, run_id_prefix: str):
    """The run launched from the UI (its id starts with what the UI's toast shows) once it finished."""
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = [run for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/from_ui": "true"}))
                if run.run_id.startswith(run_id_prefix)]
        assert len(runs) <= 1, runs
        if runs and runs[0].is_finished:
            return runs[0]
    return None


def show_asset_graph(page, url: str) -> None:
    """The global asset lineage with every group expanded (it opens with the groups collapsed)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/asset-groups", wait_until="load")
    expect(page.get_by_text("Global asset lineage", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("button", name="settings", exact=True).click()  # the graph's gear, not the nav's "Settings"
    page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
    page.keyboard.press("Escape")  # the menu stays open after the click; it would hide part of the graph
    expect(page.get_by_role("menuitem", name=re.compile("Collapse all groups"))).to_be_hidden(timeout=UI_TIMEOUT_MS)
    nodes = page.locator(GRAPH_NODE_NAME)
    for name in PLATFORM_ASSETS:
        # Strict: exactly one node with exactly this name (the `model` group's header is not a node).
        expect(nodes.filter(has_text=re.compile(rf"^{re.escape(name)}$"))).to_be_visible(timeout=UI_TIMEOUT_MS)


def materialize_from_asset_page(page, url: str) -> str:
    """Assets → brands → Materialize, as a person does; returns the run id prefix the UI's toast shows."""
    from playwright.sync_api import expect

    page.goto(f"{url}/assets/brands", wait_until="load")
    button = page.get_by_role("button", name=re.compile(r"Materialize$"))  # "materialization Materialize" (icon)
    expect(button).to_be_enabled(timeout=UI_TIMEOUT_MS)
    button.click()
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}")).first
    confirm = page.get_by_role("dialog").filter(has=page.get_by_role("button", name=re.compile(r"^(Launch|Materialize)")))
    expect(launched.or_(confirm).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    if not launched.is_visible() and confirm.is_visible():  # a launch dialog, should a Dagster version ask first
        confirm.get_by_role("button", name=re.compile(r"^(Launch|Materialize)")).last.click()
        expect(launched).to_be_visible(timeout=UI_TIMEOUT_MS)
    return re.search(r"Launched run ([0-9a-f]{8})", launched.inner_text()).group(1)


def failure_screenshot(page, path: Path) -> None:
    """The whole page as a failing test left it; never raises: the original failure matters more."""
    try:
        page.screenshot(path=str(path), full_page=True, timeout=15_000)
    except Exception:
        pass


def mark_community_modal_seen(url: str) -> None:
    """Send the UI's `setNuxSeen` mutation, as its modal's "Skip" does, so no modal covers the page."""
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": "mutation { setNuxSeen }"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer.get("data", {}).get("setNuxSeen") is True, answer


def playwright_for(screenshots: dict[str, Path]):
    """(expect, sync_playwright) once Debian's Chromium and playwright are there (required under CI=true), with
    the test's old screenshots removed: an earlier run's must never look like this run's."""
    require(Path(CHROMIUM).exists(), f"Debian chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as error:
        require(False, f"the playwright package ({error})")
    ARTIFACTS.mkdir(exist_ok=True)
    for path in screenshots.values():
        path.unlink(missing_ok=True)
    return expect, sync_playwright


@pytest.mark.browser
def test_ui_shows_the_asset_graph_and_materializes_brands_from_a_click(tmp_path, demo_shop_url):
    expect, sync_playwright = playwright_for(SCREENSHOTS)

    # No Label Studio here: the labelling sensors' ticks fail clearly and change nothing.
    env = platform_env(tmp_path, demo_shop_url, FIC_LABEL_STUDIO_URL=f"http://127.0.0.1:{free_port()}")
    with dagster_dev(env, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.set_default_navigation_timeout(UI_TIMEOUT_MS)
        page.on("dialog", lambda dialog: dialog.accept())
        # A fresh instance greets its first visitor on 127.0.0.1 with a "Join the Dagster community" modal that
        # covers the page; the UI's own "seen" mutation turns it off for the instance. (A locator handler that
        # clicked "Skip" raced the modal's 1 s open delay under load and stalled a click for 60 s.)
        mark_community_modal_seen(url)
        try:
            show_asset_graph(page, url)
            page.screenshot(path=str(SCREENSHOTS["graph"]), full_page=True)

            run_id_prefix = materialize_from_asset_page(page, url)
            run = wait_for(lambda: finished_run(env, run_id_prefix), 240, f"run {run_id_prefix} to finish", interval=2)
            assert run.status == dg.DagsterRunStatus.SUCCESS, (run.status, log_tail(tmp_path))

            page.goto(f"{url}/runs/{run.run_id}", wait_until="load")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
            page.screenshot(path=str(SCREENSHOTS["run"]), full_page=True)

            with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
                brands = warehouse.table_counts(con)["brands"]
            assert brands > 0
            page.goto(f"{url}/assets/brands", wait_until="load")
            expect(page.get_by_text("Latest materialization").first).to_be_visible(timeout=UI_TIMEOUT_MS)
            # The materialization's metadata row "brands": the count the run wrote to DuckDB.
            expect(page.get_by_role("row", name=re.compile(rf"^brands\b.* {brands}$"))).to_be_visible(timeout=UI_TIMEOUT_MS)
            page.screenshot(path=str(SCREENSHOTS["asset"]), full_page=True)
        except BaseException:
            failure_screenshot(page, SCREENSHOTS["failure"])
            raise
        finally:
            browser.close()

    # The click launched one run from the UI; the daemon dequeued it (queued run coordinator) and it materialized
    # `brands` into DuckDB.
    assert run.tags.get("dagster/from_ui") == "true" and run.asset_selection == {dg.AssetKey("brands")}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("brands"))
        enqueued = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED).records
    assert event is not None and event.run_id == run.run_id
    assert event.asset_materialization.metadata["brands"].value == brands
    assert len(enqueued) == 1
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM brands WHERE slug = 'levis'").fetchone() == (1,)

    assert_not_blank(SCREENSHOTS["graph"], 1600, 1000)
    assert_not_blank(SCREENSHOTS["run"], 1600, 1000)
    assert_not_blank(SCREENSHOTS["asset"], 1600, 1000)
    assert not SCREENSHOTS["failure"].exists()
