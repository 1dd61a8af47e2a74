"""Label Studio as a person sees it, in Debian's headless Chromium (Playwright) at 1600x1000: a real Label Studio
(session fixture), a labelling round pre-annotated by a promoted model (the production pointer, a real trained
model scoring the demo shop's images over HTTP), and the demo login. The Data Manager opens on the tab ordered by
the model's score, least sure first; a task shows its image, the model's choice pre-selected, the choices without
scrolling and the model's version and score. Screenshots go to test-artifacts/ (gitignored): label-studio-tasks.png,
label-studio-task.png, and label-studio-failure.png when a browser step fails."""

from __future__ import annotations

import re
import uuid

import dagster as dg
import pytest

from fic_assets.platform import warehouse
from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.test_ui_browser import ARTIFACTS, CHROMIUM, assert_not_blank, failure_screenshot, playwright_for

SCREENSHOTS = {
    "tasks": ARTIFACTS / "label-studio-tasks.png",
    "task": ARTIFACTS / "label-studio-task.png",
    "failure": ARTIFACTS / "label-studio-failure.png",
}
VIEWPORT = {"width": 1600, "height": 1000}
UI_TIMEOUT_MS = 60_000


def seed_shop_images(duckdb: DuckDBResource, shop_url: str, count: int) -> None:
    """The demo shop's first `count` intact images (served on 127.0.0.1, with CORS) as a crawled catalogue of two
    brands: a round interleaves brands, so its task ids are not in the order of the model's scores."""
    from fic_assets.demo.shop.catalogue import build_catalogue, truth_rows

    rows = [row for row in truth_rows(build_catalogue(42), shop_url) if not row["defect"] and not row["page_defect"]][:count]
    items = [
        {"item_id": f"{row['item_id']}-{n}", "sku": None, "name": row["item_id"], "brand": f"Demo {'AB'[n % 2]}",
         "brand_slug": f"demo-{'ab'[n % 2]}", "price": 29.95, "currency": "EUR", "colour": "blue", "url": row["product_url"],
         "images": [{"url": row["image_url"], "position": row["position"], "is_packshot": row["is_packshot"]}]}
        for n, row in enumerate(rows)
    ]
    with duckdb.connect() as con:
        warehouse.upsert_brands(con, [{"slug": f"demo-{x}", "name": f"Demo {x.upper()}", "url": f"{shop_url}/demo-{x}/"} for x in "ab"])
        warehouse.upsert_items(con, items)


def log_in(page, url: str, email: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/user/login/", wait_until="load")
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/user/login"), timeout=UI_TIMEOUT_MS)


def inside(box: dict | None) -> bool:
    return box is not None and box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"] \
        and box["y"] + box["height"] <= VIEWPORT["height"]


@pytest.mark.browser
def test_a_person_sees_the_least_sure_task_first_with_the_models_choice_and_score_without_scrolling(
        label_studio, demo_shop_url, trained_model, tmp_path, monkeypatch):
    expect, sync_playwright = playwright_for(SCREENSHOTS)
    from fic_assets.defs.labelling.assets import label_studio_project, label_tasks
    from fic_assets.defs.labelling.client import LabelStudioResource
    from fic_assets.defs.model import artifact
    from fic_assets_tests.test_labelling import materialize

    monkeypatch.setenv("FIC_MODELS_DIR", str(tmp_path / "models"))
    artifact.promote(trained_model, "browser-v1", {"f1": 1.0})
    duckdb = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    seed_shop_images(duckdb, demo_shop_url, 8)
    resources = {"label_studio": LabelStudioResource(url=label_studio.url, token=label_studio.token,
                                                     project_title=f"fic browser {uuid.uuid4().hex[:8]}"), "duckdb": duckdb}
    with dg.instance_for_test() as instance:
        materialize(label_studio_project, resources, instance)
        labelling_round = materialize(label_tasks, resources, instance, {"tasks_per_round": 4})
    assert (labelling_round["tasks_created"], labelling_round["project_model_version"]) == (4, "browser-v1")
    with duckdb.connect(read_only=True) as con:
        hints = con.execute("SELECT task_id, pre_label, pre_score FROM label_tasks WHERE pre_model_version = 'browser-v1' ORDER BY pre_score, task_id").fetchall()
    assert len(hints) == 4 and len({score for _, _, score in hints}) == 4  # distinct scores: one right order
    by_score = [task_id for task_id, _, _ in hints]
    assert by_score != sorted(by_score)  # the precondition: ordering by id (Label Studio's default) would show another order
    least_sure, label, score = hints[0]
    with resources["label_studio"].session() as ls:
        project_id = ls.project_id()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            log_in(page, label_studio.url, label_studio.username, label_studio.password)
            # The project's Data Manager as a person opens it: no tab, no ordering chosen.
            page.goto(f"{label_studio.url}/projects/{project_id}/data", wait_until="load")
            rows = page.locator("[data-testid=table-row] input[aria-label^='Select Task ']")
            expect(rows).to_have_count(4, timeout=UI_TIMEOUT_MS)
            expect(page.get_by_text("Most uncertain first").first).to_be_visible()
            top_to_bottom = sorted(range(4), key=lambda n: rows.nth(n).bounding_box()["y"])
            shown = [int(rows.nth(n).get_attribute("aria-label").rsplit(" ", 1)[1]) for n in top_to_bottom]
            assert shown == by_score, (shown, hints)  # the lowest score first
            page.screenshot(path=str(SCREENSHOTS["tasks"]))

            page.goto(f"{label_studio.url}/projects/{project_id}/data?task={least_sure}", wait_until="load")
            choices = page.locator(".lsf-choice__item label")
            expect(choices).to_have_count(3, timeout=UI_TIMEOUT_MS)
            expect(page.locator(f"input[type=radio][name={label}]")).to_be_checked()  # the model's choice, pre-selected
            image = page.locator("img[alt=image]")
            expect(image).to_be_visible()
            page.wait_for_function("() => { const img = document.querySelector('img[alt=image]'); return img && img.complete && img.naturalWidth > 0 }")
            prediction = page.locator(".lsf-annotation-button", has_text="browser-v1")
            expect(prediction).to_be_visible()
            expect(prediction).to_contain_text(f"{score * 100:.2f}%")  # the model's score on its prediction's tab
            page.screenshot(path=str(SCREENSHOTS["task"]))
            # Without scrolling: every choice and the score lie inside the 1600x1000 window as it opened.
            assert page.evaluate("() => [window.scrollX, window.scrollY]") == [0, 0]
            for n in range(3):
                assert inside(choices.nth(n).bounding_box()), (n, choices.nth(n).bounding_box())
            assert inside(prediction.bounding_box()), prediction.bounding_box()
        except BaseException:
            failure_screenshot(page, SCREENSHOTS["failure"])
            raise
        finally:
            browser.close()
    assert_not_blank(SCREENSHOTS["tasks"], 1600, 1000)
    assert_not_blank(SCREENSHOTS["task"], 1600, 1000)
    assert not SCREENSHOTS["failure"].exists()
