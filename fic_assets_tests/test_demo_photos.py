"""`fic demo-shop --photos DIR` and `fic demo --photos DIR`: the demo shop with real photos instead of drawings.

The photo catalogue (truth from the folder names, deterministic mixing, Content-Type from the bytes), every bad
input, the real server over HTTP, and one whole demo loop on the real photos (conftest's `real_photos`).
Photos are read where they are; tests only write photos they make themselves, into tmp_path.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image as PILImage
from parsel import Selector

from fic_assets.demo.shop import server
from fic_assets.demo.shop.catalogue import build_catalogue, catalogue_for, image_url, product_url, truth_rows
from fic_assets.demo.shop.images import image_bytes
from fic_assets.demo.shop.photos import PhotosError, load_photos
from fic_assets_tests.conftest import free_port, platform_env
from fic_assets_tests.dashboard_browser import check_dashboard_in_chromium


def pillow_mime(data: bytes) -> str:
    with PILImage.open(io.BytesIO(data)) as image:
        return image.get_format_mimetype()


def picture(path: Path, fmt: str, colour=(200, 40, 40), size=(60, 80), **save) -> Path:
    """A small real image of format fmt at path, whatever path's extension says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path, fmt, **save)
    return path


def rotated_jpeg(path: Path) -> Path:
    """A JPEG whose EXIF says "rotate 90° clockwise to show" (orientation 6), as phones write them."""
    exif = PILImage.Exif()
    exif[0x0112] = 6
    return picture(path, "JPEG", size=(80, 60), exif=exif.tobytes())


@pytest.fixture
def odd_photos(tmp_path) -> Path:
    """A folder whose file names lie about the format, with an EXIF-rotated JPEG and a photo in a subfolder."""
    root = tmp_path / "photos"
    picture(root / "worn" / "jpeg-named.png", "JPEG")
    rotated_jpeg(root / "worn" / "street" / "rotated.jpg")
    picture(root / "not_worn" / "png-named.jpg", "PNG", colour=(240, 240, 240))
    picture(root / "not_worn" / "webp-named.jpeg", "WEBP", colour=(20, 90, 160))
    (root / "not_worn" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: never a photo, never a warning
    return root


@pytest.fixture(scope="module")
def real_set(real_photos):
    return load_photos(real_photos)


# --- the photo catalogue ------------------------------------------------------------------------------------

def test_truth_comes_from_the_folder_names_and_the_rest_of_the_catalogue_stays(real_set):
    catalogue = build_catalogue(42, real_set)
    drawn = build_catalogue(42)
    assert (len(real_set.worn), len(real_set.not_worn), real_set.skipped) == (75, 74, ())
    assert catalogue.brands == drawn.brands
    for product, original in zip(catalogue.products, drawn.products, strict=True):
        assert (product.sku, product.name, product.offers, product.page_defect, product.path) == (
            original.sku, original.name, original.offers, original.page_defect, original.path)
        assert [(i.position, i.kind, i.defect) for i in product.images] == [(i.position, i.kind, i.defect) for i in original.images]
        for image in product.images:
            assert image.photo is not None and image.truth == image.photo.label == image.photo.path.split("/")[0]
            assert image.id not in {i.id for i in original.images}  # another URL than the drawing: caches never mix them
    rows = truth_rows(catalogue, "http://shop")
    assert all(row["truth"] == row["photo"].split("/")[0] for row in rows)
    assert all((real_set.root / row["photo"]).is_file() for row in rows)
    assert {row["truth"] for row in truth_rows(drawn, "http://shop")} == {"worn", "not_worn"}
    assert all(row["photo"] == "" for row in truth_rows(drawn, "http://shop"))


def test_photos_are_mixed_deterministically_every_photo_used_evenly(real_set, real_photos):
    catalogue = build_catalogue(42, real_set)
    assert catalogue == build_catalogue(42, load_photos(real_photos)) == catalogue_for(42, real_set)
    assert [i.photo for p in build_catalogue(7, real_set).products for i in p.images] != [
        i.photo for p in catalogue.products for i in p.images]
    images = [image for product in catalogue.products for image in product.images]
    uses = collections.Counter(image.photo for image in images)
    assert set(uses) == {*real_set.worn, *real_set.not_worn}  # 2218 slots: all 149 photos, each 14-16 times
    for label in ("worn", "not_worn"):
        counts = [uses[photo] for photo in real_set.of(label)]
        assert max(counts) - min(counts) <= 2, label
    # The worn/not_worn mix of the drawings stays: about half worn, and most products show both kinds.
    assert 0.4 < sum(image.truth == "worn" for image in images) / len(images) < 0.6
    assert sum(len({i.truth for i in p.images}) == 2 for p in catalogue.products) > len(catalogue.products) / 2
    # A product never shows one photo twice while its folder has others.
    assert all(len({i.photo for i in p.images}) == len(p.images) for p in catalogue.products)
    # The first listing page of every brand (what FIC_MAX_PAGES=1 crawls) already shows every photo.
    first_pages = {i.photo for b in catalogue.brands for p in catalogue.listing(b.path)[:24] for i in p.images}
    assert len(first_pages) == 149


def test_fewer_photos_than_slots_repeat_across_and_within_products(tmp_path):
    picture(tmp_path / "worn" / "one.jpg", "JPEG")
    picture(tmp_path / "not_worn" / "other.jpg", "JPEG", colour=(255, 255, 255))
    photos = load_photos(tmp_path)
    catalogue = build_catalogue(42, photos)
    assert {i.photo.path for p in catalogue.products for i in p.images if i.truth == "worn"} == {"worn/one.jpg"}
    assert any(sum(i.truth == "worn" for i in p.images) > 1 for p in catalogue.products)


def test_content_type_is_the_real_format_and_the_body_the_files_bytes(odd_photos):
    photos = load_photos(odd_photos)
    formats = {photo.path: (photo.format, photo.content_type) for photo in (*photos.worn, *photos.not_worn)}
    assert formats == {
        "worn/jpeg-named.png": ("JPEG", "image/jpeg"),
        "worn/street/rotated.jpg": ("JPEG", "image/jpeg"),
        "not_worn/png-named.jpg": ("PNG", "image/png"),
        "not_worn/webp-named.jpeg": ("WEBP", "image/webp"),
    }
    served = {}
    for product in build_catalogue(42, photos).products:
        for image in product.images:
            if image.defect is None:
                answer = image_bytes(image, 156)  # the same bytes at every imwidth
                assert answer.body == (odd_photos / image.photo.path).read_bytes() == image_bytes(image).body
                served[image.photo.path] = answer.content_type
    assert served == {path: content_type for path, (_, content_type) in formats.items()}
    # The rotation is left in the EXIF, as a shop serves a phone's photo: the platform turns it upright.
    with PILImage.open(odd_photos / "worn" / "street" / "rotated.jpg") as image:
        assert image.size == (80, 60) and image.getexif()[0x0112] == 6


def test_every_real_photo_is_served_byte_for_byte_under_its_detected_type(real_set):
    catalogue = build_catalogue(42, real_set)
    first = {}
    for product in catalogue.products:
        for image in product.images:
            if image.defect is None:
                first.setdefault(image.photo, image)
    assert len(first) == 149
    rotated = 0
    for photo, image in first.items():
        data = photo.file.read_bytes()
        answer = image_bytes(image)
        assert answer.body == data and answer.content_type == pillow_mime(data), photo.path
        with PILImage.open(photo.file) as opened:
            rotated += opened.getexif().get(0x0112, 1) != 1
    assert rotated >= 5  # the phone photos keep their EXIF rotation


def test_broken_images_stay_broken_with_photos(real_set):
    """The defects of the drawn shop (IMAGE_DEFECT_PLACES) are made from the photo in their slot."""
    catalogue = build_catalogue(42, real_set)
    broken = {image.defect: image for product in catalogue.products for image in product.images if image.defect}
    assert image_bytes(broken["missing"]) is None
    assert image_bytes(broken["empty"]).body == b""
    truncated = image_bytes(broken["truncated"])
    assert truncated.body == broken["truncated"].photo.read()[: len(truncated.body)]
    assert len(truncated.body) < len(broken["truncated"].photo.read())
    cmyk = image_bytes(broken["cmyk"])
    with PILImage.open(io.BytesIO(cmyk.body)) as image:
        assert (cmyk.content_type, image.format, image.mode) == ("image/jpeg", "JPEG", "CMYK")
    alpha = image_bytes(broken["png_alpha"])
    with PILImage.open(io.BytesIO(alpha.body)) as image:
        assert (alpha.content_type, image.mode) == ("image/png", "RGBA")


# --- bad input --------------------------------------------------------------------------------------------

def test_missing_folder_is_a_clear_error_in_the_loader_and_both_commands(tmp_path, capsys):
    """Bad input: DIR does not exist (and DIR is a file); both commands stop with code 2 before starting anything."""
    with pytest.raises(PhotosError, match="does not exist"):
        load_photos(tmp_path / "nowhere")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(PhotosError, match="is not a folder"):
        load_photos(tmp_path / "file")
    with pytest.raises(SystemExit) as exited:
        server.main(["--photos", str(tmp_path / "nowhere"), "--write-truth", str(tmp_path / "truth.csv")])
    assert exited.value.code == 2 and not (tmp_path / "truth.csv").exists()
    assert f"error: --photos: photos folder {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    from fic_assets.demo import run as demo

    with pytest.raises(SystemExit) as exited:
        demo.main(["--photos", str(tmp_path / "nowhere")])
    assert exited.value.code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("present", ["worn", "not_worn", None])
def test_missing_class_folder_is_named(tmp_path, present):
    """Bad input: DIR without worn/ or without not_worn/ (or both); the error names what is missing and what is there."""
    (tmp_path / "Worn").mkdir()  # a near miss does not count: the names are the truth
    if present:
        picture(tmp_path / present / "a.jpg", "JPEG")
    with pytest.raises(PhotosError) as error:
        load_photos(tmp_path)
    message = str(error.value)
    for label in ("worn", "not_worn"):
        assert (f"no {label}/" in message) == (label != present), label
    assert "it holds: Worn/" in message


def test_class_folder_without_a_readable_photo_names_every_bad_file(tmp_path):
    """Bad input: not_worn/ holds only files that are not usable images; each is named with its reason."""
    picture(tmp_path / "worn" / "a.jpg", "JPEG")
    (tmp_path / "not_worn").mkdir()
    (tmp_path / "not_worn" / "notes.txt").write_text("shirt on a hanger")
    good = io.BytesIO()
    PILImage.new("RGB", (300, 300), (1, 2, 3)).save(good, "JPEG")
    (tmp_path / "not_worn" / "cut.jpg").write_bytes(good.getvalue()[:400])
    (tmp_path / "not_worn" / "empty.png").write_bytes(b"")
    with pytest.raises(PhotosError) as error:
        load_photos(tmp_path)
    message = str(error.value)
    assert message.startswith(f"no readable photo in {tmp_path.resolve() / 'not_worn'}/: ")
    for name, reason in (("notes.txt", "not_an_image"), ("cut.jpg", "truncated"), ("empty.png", "empty")):
        assert f"not_worn/{name} ({reason}: " in message, name


def test_empty_class_folder_says_so(tmp_path):
    """Bad input: worn/ exists but is empty (a hidden file does not count)."""
    (tmp_path / "worn").mkdir()
    (tmp_path / "worn" / ".keep").write_text("")
    picture(tmp_path / "not_worn" / "a.jpg", "JPEG")
    with pytest.raises(PhotosError, match=r"no readable photo in .*/worn/: the folder is empty"):
        load_photos(tmp_path)


def test_unreadable_file_beside_good_photos_is_skipped_with_a_warning(odd_photos, capsys):
    """Bad input: one unreadable file (a cut-off JPEG) among good photos: skipped, named in a warning, never served."""
    data = (odd_photos / "worn" / "jpeg-named.png").read_bytes()
    (odd_photos / "worn" / "broken.jpg").write_bytes(data[: len(data) // 2])
    photos = load_photos(odd_photos)
    assert [path for path, _ in photos.skipped] == ["worn/broken.jpg"]
    assert photos.skipped[0][1].startswith("truncated: ")
    assert f"warning: skipping photo {odd_photos.resolve() / 'worn' / 'broken.jpg'}: truncated: " in capsys.readouterr().err
    assert "worn/broken.jpg" not in {i.photo.path for p in build_catalogue(42, photos).products for i in p.images}
    assert photos.describe()["skipped"] == 1


# --- what the demo says ---------------------------------------------------------------------------------------

def test_demo_scores_predictions_against_the_truth_and_counts_another_url_of_a_labelled_photo_as_seen(tmp_path, real_set):
    import duckdb

    from fic_assets.demo import run as demo

    catalogue = build_catalogue(42, real_set)
    base = "http://shop"
    rows = [row for row in truth_rows(catalogue, base) if not row["defect"]]
    labelled = rows[0]
    twin = next(row for row in rows[1:] if row["photo"] == labelled["photo"])  # the same photo, another product
    fresh = [row for row in rows if row["photo"] != labelled["photo"]][:9]
    wrong = {"worn": "not_worn", "not_worn": "worn"}
    predictions = [(labelled["image_url"], labelled["truth"]), (twin["image_url"], twin["truth"])]
    predictions += [(row["image_url"], row["truth"]) for row in fresh[:8]] + [(fresh[8]["image_url"], "error")]
    con = duckdb.connect(str(tmp_path / "fic.duckdb"))
    con.execute("CREATE TABLE labels (image_url TEXT, label TEXT)")
    con.execute("INSERT INTO labels VALUES (?, ?)", [labelled["image_url"], labelled["truth"]])
    con.execute("CREATE TABLE predictions (image_url TEXT, label TEXT)")
    con.executemany("INSERT INTO predictions VALUES (?, ?)", predictions)
    expected = demo.f1([(row["truth"], row["truth"]) for row in fresh[:8]])
    assert demo.score_against_truth(con, catalogue, base) == (
        f"predictions against the shop's kept truth: F1 1.000 on 10 images; F1 {expected:.3f} on the 8 whose photo "
        "no label has seen; 1 usable images could not be scored")
    con.execute("UPDATE predictions SET label = ? WHERE image_url = ?", [wrong[twin["truth"]], twin["image_url"]])
    assert "F1 1.000 on 10 images" not in demo.score_against_truth(con, catalogue, base)
    assert demo.f1([("worn", "worn"), ("worn", "not_worn"), ("not_worn", "worn"), ("not_worn", "not_worn")]) == 0.5


def test_demo_warns_when_duckdb_holds_labels_of_other_images(tmp_path, real_set, monkeypatch, capsys):
    """An earlier demo on the same FIC_DATA_DIR with drawings leaves labels the photo demo would train on too."""
    import duckdb

    from fic_assets.demo import run as demo

    monkeypatch.setenv("FIC_DUCKDB", str(tmp_path / "fic.duckdb"))
    drawn_url = truth_rows(build_catalogue(42), "http://shop")[0]["image_url"]
    with duckdb.connect(str(tmp_path / "fic.duckdb")) as con:
        con.execute("CREATE TABLE labels (image_url TEXT, label TEXT)")
        con.execute("INSERT INTO labels VALUES (?, 'worn'), ('https://elsewhere.example/a.jpg', 'worn')", [drawn_url])
    demo.warn_about_other_images(build_catalogue(42), "http://shop")
    assert capsys.readouterr().out == ""
    demo.warn_about_other_images(build_catalogue(42, real_set), "http://shop")
    assert "warning: 1 labels in" in capsys.readouterr().out


# --- the real server over HTTP ------------------------------------------------------------------------------

def fetch(url: str, host: str | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers.get("Content-Type"), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def test_demo_shop_command_serves_the_photos_over_http(odd_photos, real_set, tmp_path, monkeypatch, capsys):
    """`fic demo-shop --background --photos DIR` starts the real server (a detached `fic demo-shop --photos DIR`):
    health names the photos, a listing links a product whose JSON-LD images are the photos' bytes under their real
    Content-Type, the truth file says which is worn, and a shop with other images on that port is refused."""
    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path / "data"))
    photos = load_photos(odd_photos)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        assert server.main(["--background", "--port", str(port), "--photos", str(odd_photos)]) == 0
        assert server.main(["--background", "--port", str(port), "--photos", str(odd_photos)]) == 0  # already up
        assert capsys.readouterr().out.splitlines() == [url, url]
        assert server.probe(url)["photos"] == {"dir": str(odd_photos.resolve()), "fingerprint": photos.fingerprint,
                                               "worn": 2, "not_worn": 2, "skipped": 0}

        catalogue = build_catalogue(42, photos)
        status, _, body = fetch(f"{url}/levis/")
        assert status == 200
        # A product of the first listing page with plain JSON-LD (an object, not a list or @graph).
        first = next(p for p in catalogue.listing("levis")[:24] if p.jsonld_shape == "object" and p.page_defect is None)
        links = Selector(body.decode()).css("a::attr(href)").getall()
        assert first.path in links or product_url(url, first) in links
        status, content_type, body = fetch(product_url(url, first))
        assert status == 200 and content_type.startswith("text/html")
        ld = [json.loads(text) for text in Selector(body.decode()).xpath('//script[@type="application/ld+json"]/text()').getall()]
        product_ld = next(d for d in ld if isinstance(d, dict) and d.get("@type") == "Product")
        assert product_ld["image"] == [image_url(url, image) for image in first.images]
        for image, src in zip(first.images, product_ld["image"]):
            status, content_type, data = fetch(src)
            assert (status, content_type, data) == (200, image.photo.content_type, image.photo.read())

        _, _, body = fetch(f"{url}/_demo/truth.csv")
        rows = {row["image_url"]: row for row in csv.DictReader(io.StringIO(body.decode()))}
        assert {(rows[src]["truth"], rows[src]["photo"]) for src in product_ld["image"]} == {
            (image.photo.label, image.photo.path) for image in first.images}

        # The same port with drawings or other photos is another shop: --background and `fic demo` refuse to use it.
        assert server.main(["--background", "--port", str(port)]) == 1
        assert "not seed 42 and drawn images; stop it first" in capsys.readouterr().err
        from fic_assets.demo import run as demo

        demo.ensure_demo_shop(url, photos)
        for other in (None, real_set):
            with pytest.raises(SystemExit, match=f"the demo shop at {url} serves seed 42 and the photos in"):
                demo.ensure_demo_shop(url, other)
    finally:
        assert server.main(["--stop", "--port", str(port)]) == 0
    assert server.probe(url) is None
    log = (tmp_path / "data" / f"demo-shop-{port}.log").read_text()
    assert f"demo shop (seed 42, 2 worn and 2 not_worn photos from {odd_photos.resolve()}) serving on {url}" in log


# --- the whole loop on the real photos ---------------------------------------------------------------------

# Six of the twelve brands, the three with the deliberate defects among them: ~580 images on their first listing
# pages instead of ~1150, so the loop costs about what the drawn one does (a real photo takes ~10 ms to decode,
# 5x a drawing; the biggest, 12 MP phone photos and 2 MP PNGs, several times that). Every photo is still shown.
LOOP_BRANDS = ("levis", "bjorn-borg", "jack-jones", "eve-sohne", "fjallraven", "adidas-originals")
# Dagster's implicit asset job: the job of the runs the automation launches (IMPLICIT_ASSET_JOB_NAME).
ASSET_JOB = "__ASSET_JOB"


@pytest.fixture(scope="module")
def photo_shop_url(real_set):
    """The demo shop with the real photos, its catalogue cut to LOOP_BRANDS (everything else as `--photos` serves
    it: same seed, same photos, so `fic demo --photos` accepts it and its truth covers every URL)."""
    import dataclasses

    full = catalogue_for(42, real_set)
    small = dataclasses.replace(full, brands=tuple(b for b in full.brands if b.path in LOOP_BRANDS),
                                products=tuple(p for p in full.products if p.brand.path in LOOP_BRANDS))
    with server.running_demo_shop(catalogue=small) as base_url:
        yield base_url


@pytest.mark.browser
def test_demo_runs_the_whole_loop_on_real_photos(tmp_path, photo_shop_url, real_photos, real_set, label_studio, s3):
    """`fic demo --photos DIR` on the real photos, set up like test_dagster_cli's whole-loop test (first listing page
    of each brand, 200 labels a round, the fast train params) but on six brands: it completes with predictions for
    every image and the report, the labels are the folders, and the F1 the demo prints is sane on real photos.
    The dashboard it ends with is browsed in Chromium (dashboard_browser.py) before it is stopped."""
    import dagster as dg
    import yaml

    from fic_assets.platform import warehouse
    from fic_assets.defs.labelling.simulated_annotator import truth_by_url
    from fic_assets_tests.test_dagster_cli import run
    from fic_assets_tests.test_model_assets import FAST_PARAMS

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**FAST_PARAMS, "evaluate": {"min_f1": 0.5}}))
    env = platform_env(
        tmp_path,
        photo_shop_url,
        FIC_LABEL_STUDIO_URL=label_studio.url,
        FIC_LABEL_STUDIO_TOKEN=label_studio.token,
        FIC_LABEL_STUDIO_DATA_DIR=str(label_studio.data_dir),
        FIC_S3_ENDPOINT=s3.endpoint_url,
        FIC_S3_BUCKET=s3.bucket,
        FIC_S3_PREFIX=f"demo-{tmp_path.name}",
        FIC_S3_ACCESS_KEY=s3.access_key_id,
        FIC_S3_SECRET_KEY=s3.secret_access_key,
        FIC_DVC_ROOT=str(tmp_path / "project"),
        FIC_IMAGE_SET_DIR=str(tmp_path / "project" / "datasets" / "images"),
        FIC_MODELS_DIR=str(tmp_path / "models"),
        FIC_PARAMS_FILE=str(params),
    )
    started = time.monotonic()
    dashboard_url = f"http://127.0.0.1:{env['FIC_DASHBOARD_PORT']}"
    try:
        demo = run([sys.executable, "-m", "fic_assets.cli", "demo", "--error-rate", "0", "--photos", str(real_photos)], env, timeout=900)
        assert demo.stdout.rstrip().splitlines()[-1].endswith(f"example images, the model, downloads): {dashboard_url}"), demo.stdout[-2000:]
        # The dashboard the demo left running, in Chromium, over this run's snapshot and the shop's real photos.
        check_dashboard_in_chromium(dashboard_url, Path(env["FIC_DATA_DIR"]) / "analytics", photo_shop_url)
    finally:  # the dashboard the demo leaves running in the background
        stopped = run([sys.executable, "-m", "fic_assets.cli", "dashboard", "--stop"], env, timeout=60)
    assert f"stopped the dashboard on {dashboard_url}" in stopped.stdout, stopped.stdout
    print(f"\nfic demo --photos: {time.monotonic() - started:.0f} s\n" + "\n".join(
        line for line in demo.stdout.splitlines() if line.startswith("[fic demo]")))
    assert "[fic demo] photos: 75 worn, 74 not_worn from" in demo.stdout
    assert "SIMULATED annotator answered 200 tasks" in demo.stdout

    # The same loop as test_dagster_cli's whole-loop test: two rounds, one retrain, predictions, the report.
    truth = truth_by_url(truth_rows(build_catalogue(42, real_set), photo_shop_url))
    production = json.loads((tmp_path / "models" / "production.json").read_text())
    assert f"production model {production['version']}: " in demo.stdout
    with warehouse.connect(env["FIC_DUCKDB"], read_only=True) as con:
        labels = dict(con.execute("SELECT image_url, label FROM labels").fetchall())
        tasks = con.execute("SELECT count(*), count(DISTINCT image_url) FROM label_tasks").fetchone()
        hinted = con.execute("SELECT count(*) FROM label_tasks WHERE pre_model_version = ?", [production["version"]]).fetchone()[0]
        images = con.execute("SELECT count(*) FROM images").fetchone()[0]
        predicted = con.execute(
            """SELECT count(*), count(*) FILTER (WHERE r.model_version = ?),
                      count(*) FILTER (WHERE i.flag_model = CASE r.label WHEN 'worn' THEN 1 WHEN 'not_worn' THEN 0 ELSE -1 END),
                      count(*) FILTER (WHERE r.label IN ('worn', 'not_worn'))
               FROM images i JOIN predictions r USING (image_url)""", [production["version"]]).fetchone()
    assert len(labels) == 200 and all(truth[url] == label for url, label in labels.items())  # the folders, exactly
    assert tasks == (400, 400) and hinted > 150
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs()
    jobs = sorted(run.job_name for run in runs if run.job_name != ASSET_JOB)
    assert jobs == ["crawl_job", "discover_brands_job", "human_labels_job", "labelling_round_job", "labelling_round_job",
                    "retrain_job"]
    # The automation launches what is stale as runs of the assets (Dagster's implicit asset job), as the daemon's
    # automation_sensor would: every brand's predictions in one run, then the analytics snapshot and the report in one.
    automated = sorted(tuple(sorted(key.to_user_string() for key in run.asset_selection or ())) for run in runs
                       if run.job_name == ASSET_JOB)
    assert automated == [("analytics_snapshot", "brand_report"), ("brand_predictions",)]
    assert predicted[:3] == (images, images, images) and images > 500
    assert predicted[3] >= images - 10  # only the broken images (404, empty, truncated, HTML, bomb) are not scored
    report = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert "Levi&#39;s" in report and "Björn Borg" in report

    assert production["metrics"]["f1"] >= 0.85  # cross-validated on the labelled photos (identical files share a fold)
    scored = re.search(r"kept truth: F1 ([\d.]+) on (\d+) images; F1 ([\d.]+) on the (\d+) whose photo no label has seen",
                       demo.stdout)
    assert scored, demo.stdout[-3000:]
    all_f1, n_all, unseen_f1, n_unseen = float(scored[1]), int(scored[2]), float(scored[3]), int(scored[4])
    assert n_all >= images - 10 and all_f1 >= 0.85
    assert n_unseen < n_all and (n_unseen < 20 or unseen_f1 >= 0.7)
