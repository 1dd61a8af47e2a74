"""The image set: real downloads from the demo shop, the content cache, the label mirror, DVC against moto S3."""

from __future__ import annotations

import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
import requests
from PIL import Image

from fic_assets.demo.shop.catalogue import IMAGE_DEFECTS, build_catalogue, image_url
from fic_assets.defs.dataset.build import build_image_set, file_name, store_rejects
from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.defs.dataset.download import DownloadPolicy, fetch_many
from fic_assets.defs.dataset.dvc import DvcError, DvcProject
from fic_assets.platform import warehouse
from fic_assets_tests.conftest import free_port

# What each broken demo-shop image must be rejected for (cmyk and png_alpha are converted, not rejected).
EXPECTED_REASONS = {
    "truncated": "truncated:",
    "empty": "empty:",
    "html": "not_an_image: the body is an HTML page",
    "huge": "too_large:",
    "missing": "download: HTTP 404",
}


class CountingSession(requests.Session):
    """A requests.Session that counts GETs, to prove what the cache served."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.lock = threading.Lock()

    def get(self, url, **kwargs):  # type: ignore[override]
        with self.lock:
            self.gets += 1
        return super().get(url, **kwargs)


@pytest.fixture(scope="module")
def labelled(demo_shop_url) -> list[tuple[str, str]]:
    """~30 (url, truth) pairs: every broken image plus the first healthy ones, as the labelling round would give."""
    images = [image for product in build_catalogue(42).products for image in product.images]
    broken = [image for image in images if image.defect]
    assert {image.defect for image in broken} == set(IMAGE_DEFECTS)
    healthy = [image for image in images if not image.defect][:23]
    return [(image_url(demo_shop_url, image), image.truth) for image in broken + healthy]


@pytest.fixture(scope="module")
def defect_of(demo_shop_url) -> dict[str, str]:
    return {image_url(demo_shop_url, image): image.defect for product in build_catalogue(42).products
            for image in product.images if image.defect}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> ImageCache:
    """One cache for the module, so the shop is asked once per image."""
    return ImageCache(tmp_path_factory.mktemp("image-cache"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_build_rejects_broken_images_and_converts_odd_modes(tmp_path, labelled, defect_of, shared_cache):
    result = build_image_set(labelled, tmp_path / "images", shared_cache, workers=4)

    reasons = {reject.image_url: reject.reason for reject in result.rejects}
    assert {defect_of[url] for url in reasons} == set(EXPECTED_REASONS)
    for url, reason in reasons.items():
        assert reason.startswith(EXPECTED_REASONS[defect_of[url]]), (defect_of[url], reason)
    label_of = dict(labelled)
    for defect in ("cmyk", "png_alpha"):
        url = next(u for u, d in defect_of.items() if d == defect)
        with Image.open(tmp_path / "images" / label_of[url] / file_name(url)) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            assert "exif" not in image.info and "icc_profile" not in image.info
    assert result.written == len(labelled) - len(EXPECTED_REASONS) == sum(result.counts.values())
    for label, count in result.counts.items():
        assert count == sum(1 for url, lab in labelled if lab == label and url not in reasons)

    # Rejects land in DuckDB; an image that succeeds later leaves the table.
    con = duckdb.connect(str(tmp_path / "fic.duckdb"))
    warehouse.ensure_schema(con)
    store_rejects(con, result)
    store_rejects(con, result)  # an upsert: no duplicates
    assert con.execute("SELECT count(*) FROM image_rejects").fetchone()[0] == len(EXPECTED_REASONS)
    healed = next(iter(reasons))
    result.rejects = [r for r in result.rejects if r.image_url != healed]
    result.accepted.append(healed)
    store_rejects(con, result)
    rows = dict(con.execute("SELECT image_url, reason FROM image_rejects").fetchall())
    assert healed not in rows and len(rows) == len(EXPECTED_REASONS) - 1


def test_rebuild_is_stable_and_mirrors_label_changes(tmp_path, labelled, shared_cache):
    out = tmp_path / "images"
    build_image_set(labelled, out, shared_cache)
    first = tree_bytes(out)
    again = build_image_set(labelled, out, shared_cache)
    assert (again.written, again.moved, again.removed, again.unchanged) == (0, 0, 0, sum(again.counts.values()))
    assert tree_bytes(out) == first

    # Fresh directory, same inputs: the same bytes (deterministic encoding), so the same DVC hash.
    other = tmp_path / "other"
    build_image_set(labelled, other, shared_cache)
    assert tree_bytes(other) == first

    healthy = [(url, label) for url, label in labelled if f"{label}/{file_name(url)}" in first]
    flipped_url, old_label = healthy[0]
    new_label = "worn" if old_label == "not_worn" else "not_worn"
    dropped_url, dropped_label = healthy[1]
    changed = [(flipped_url, new_label), (dropped_url, "unusable"), ("http://127.0.0.1:1/x.jpg", "maybe")]
    changed += healthy[2:]
    result = build_image_set(changed, out, shared_cache)
    assert (result.moved, result.removed, result.written) == (1, 1, 0)
    assert (out / new_label / file_name(flipped_url)).read_bytes() == first[f"{old_label}/{file_name(flipped_url)}"]
    assert not (out / old_label / file_name(flipped_url)).exists()
    assert not (out / dropped_label / file_name(dropped_url)).exists()
    assert sum(result.counts.values()) == len(healthy) - 1


def test_cache_serves_rebuilds_and_detects_corruption(tmp_path, labelled, shared_cache):
    build_image_set(labelled, tmp_path / "warm", shared_cache)  # fills the cache if no other test did
    session = CountingSession()
    result = build_image_set(labelled, tmp_path / "fresh", shared_cache, session=session)
    assert session.gets == 1  # only the 404, which is never cached
    assert result.from_cache == len(labelled) - 1 and result.downloaded == 0

    url = next(url for url, _ in labelled if f"{_}/{file_name(url)}" in tree_bytes(tmp_path / "fresh"))
    cache = ImageCache(tmp_path / "own-cache")
    fetch_many([url], cache)
    good = cache.data_path(url).read_bytes()
    cache.data_path(url).write_bytes(good[: len(good) // 2])  # cut short, as by a crash or a full disk
    assert cache.get(url) is None and cache.corrupt == 1
    session = CountingSession()
    again = fetch_many([url], cache, session=session)
    assert session.gets == 1 and not again[url].from_cache and again[url].data == good
    assert cache.get(url) == good


class FlakyHandler(BaseHTTPRequestHandler):
    """/flaky answers 503 twice then 200; /busy 429 once then 200; /gone 410."""

    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802
        count = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status = {"/flaky": 503 if count <= 2 else 200, "/busy": 429 if count == 1 else 200}.get(self.path, 410)
        body = b"image bytes" if status == 200 else b"no"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_fetch_retries_what_may_pass_and_names_what_failed(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (backlog) but never answers: a timeout
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = {"flaky": f"{base}/flaky", "busy": f"{base}/busy", "gone": f"{base}/gone",
            "refused": f"http://127.0.0.1:{free_port()}/x.jpg", "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/x"}
    try:
        results = fetch_many(urls.values(), ImageCache(tmp_path), policy=DownloadPolicy(retries=2, timeout=0.5, backoff=0.05))
    finally:
        server.shutdown()
        silent.close()
    outcome = {name: results[url] for name, url in urls.items()}
    assert outcome["flaky"].data == b"image bytes" and FlakyHandler.hits["/flaky"] == 3
    assert outcome["busy"].data == b"image bytes" and FlakyHandler.hits["/busy"] == 2
    assert outcome["gone"].error == "HTTP 410" and FlakyHandler.hits["/gone"] == 1  # final: no retry
    assert outcome["refused"].error == "connection refused"
    assert outcome["silent"].error == "timed out after 0.5 s"


@pytest.fixture
def image_project(tmp_path, labelled, shared_cache, s3) -> tuple[DvcProject, Path]:
    """A no-SCM DVC project with a built image set and the moto remote configured."""
    project = DvcProject(tmp_path / "project")
    project.ensure_init()
    project.configure_remote("images", f"s3://{s3.bucket}/{tmp_path.name}", s3.endpoint_url, s3.access_key_id,
                             s3.secret_access_key)
    out = project.root / "datasets" / "images"
    build_image_set(labelled, out, shared_cache)
    return project, out


def test_dvc_push_then_pull_in_a_fresh_copy_restores_the_exact_set(tmp_path, image_project, labelled,
                                                                   shared_cache, s3):
    project, out = image_project
    digest = project.add(out)
    assert digest.endswith(".dir") and len(digest) == 36
    assert project.add(out) == digest  # nothing changed, same hash
    rebuilt = tmp_path / "rebuilt"
    build_image_set(labelled, rebuilt, shared_cache)
    shutil.rmtree(out)
    shutil.copytree(rebuilt, out)
    assert project.add(out) == digest  # the same labels rebuilt elsewhere: byte-identical, same hash
    project.push(out)
    assert "in sync" in project.status(out, cloud=True)

    committed = (project.root / ".dvc" / "config").read_text()
    assert s3.secret_access_key not in committed and s3.access_key_id not in committed
    assert s3.secret_access_key in (project.root / ".dvc" / "config.local").read_text()

    # A fresh clone: what git would hold (.dvc/config, the pointer), no images, no DVC cache, keys from env.
    clone = DvcProject(tmp_path / "clone")
    (clone.root / ".dvc").mkdir(parents=True)
    shutil.copy(project.root / ".dvc" / "config", clone.root / ".dvc" / "config")
    (clone.root / "datasets").mkdir()
    shutil.copy(project.root / "datasets" / "images.dvc", clone.root / "datasets" / "images.dvc")
    clone.configure_remote("images", f"s3://{s3.bucket}/{tmp_path.name}", s3.endpoint_url, s3.access_key_id,
                           s3.secret_access_key)
    clone.pull(clone.root / "datasets" / "images")
    assert tree_bytes(clone.root / "datasets" / "images") == tree_bytes(out)


def test_dvc_push_to_a_dead_endpoint_fails_clearly_and_a_later_push_succeeds(image_project, s3):
    project, out = image_project
    before = tree_bytes(out)
    project.add(out)
    dead = f"http://127.0.0.1:{free_port()}"
    project.run("remote", "modify", "images", "endpointurl", dead)
    with pytest.raises(DvcError, match=rf"S3 remote at {dead} is not reachable"):
        project.push(out)
    assert tree_bytes(out) == before

    project.run("remote", "modify", "images", "endpointurl", s3.endpoint_url)
    assert "pushed" in project.push(out)
    assert tree_bytes(out) == before


def test_dvc_push_with_wrong_keys_says_the_credentials_were_refused(image_project, s3):
    project, out = image_project
    project.add(out)
    project.run("remote", "modify", "--local", "images", "secret_access_key", "not-the-secret")
    with pytest.raises(DvcError, match=rf"S3 remote at {s3.endpoint_url} refused the credentials"):
        project.push(out)


def test_publish_image_set_builds_from_duckdb_records_the_rejects_and_pushes_one_hash(tmp_path, labelled, defect_of,
                                                                                      shared_cache, s3):
    """The whole `image_set` step as a plain function: DuckDB labels -> files -> image_rejects -> DVC -> S3."""
    from fic_assets.defs.dataset.build import NoTrainableLabels, publish_image_set
    from fic_assets.defs.dataset.dvc import tracked_dir_hash
    from fic_assets.platform.warehouse import DuckDBResource
    from fic_assets_tests.test_model_assets import seed_labels

    db = DuckDBResource(path=str(tmp_path / "fic.duckdb"))
    project = DvcProject(tmp_path / "project")
    out = project.root / "datasets" / "images"
    opened = []

    def open_project() -> DvcProject:
        opened.append(project.root)
        project.ensure_init()
        project.configure_remote("images", f"s3://{s3.bucket}/{tmp_path.name}", s3.endpoint_url, s3.access_key_id,
                                 s3.secret_access_key)
        return project

    with db.connect():
        pass  # an empty platform: the schema, no label
    with pytest.raises(NoTrainableLabels, match="materialize `human_labels`"):
        publish_image_set(db.connect, out, shared_cache, open_project)
    assert not opened and not out.exists() and tracked_dir_hash(out) is None  # nothing built, DVC not touched

    seed_labels(db, labelled)
    published = publish_image_set(db.connect, out, shared_cache, open_project)
    assert published.digest == tracked_dir_hash(out) and published.digest.endswith(".dir")
    assert "in sync" in project.status(out, cloud=True)
    with db.connect(read_only=True) as con:
        stored = dict(con.execute("SELECT image_url, reason FROM image_rejects").fetchall())
    assert stored == {reject.image_url: reject.reason for reject in published.result.rejects}
    assert set(stored) == {url for url, defect in defect_of.items() if defect in EXPECTED_REASONS}

    again = publish_image_set(db.connect, out, shared_cache, open_project)
    assert again.digest == published.digest and again.result.written == 0
