"""Shared fixtures: real components started by the tests themselves."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fic_assets.platform.net import free_port  # noqa: F401  (tests import it from here)

IN_CI = os.environ.get("CI", "").lower() == "true"
BIN = Path(sys.executable).parent


def dg_command(*args: str) -> list[str]:
    """A `dg` command on this repository's project (pyproject's [tool.dg]), as the README and scripts/ui run it;
    --target-path lets the test's subprocess run from its own temp dir."""
    from fic_assets.platform.settings import REPO_ROOT

    return [str(BIN / "dg"), *args, "--target-path", str(REPO_ROOT)]


def platform_env(root, shop_url: str, **settings: str) -> dict[str, str]:
    """Environment for a subprocess running the platform on its own temp instance and data under root."""
    import shutil

    from fic_assets.platform.instance import TEMPLATE

    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FIC_DATA_DIR": str(root / "data"),
        "FIC_DUCKDB": str(root / "data" / "fic.duckdb"),
        "FIC_SHOP_URL": shop_url,
        "FIC_MAX_PAGES": "1",  # the first listing page of each brand keeps subprocess tests quick
        "FIC_MODELS_DIR": str(root / "models"),  # never the repo's models/ or reports/
        "FIC_REPORTS_DIR": str(root / "reports"),
        "FIC_SENSOR_INTERVAL_SECONDS": "5",  # a daemon started by a test ticks every 5 s, not every minute
        "FIC_DASHBOARD_PORT": str(free_port()),  # a whole `fic demo` starts its dashboard there, never on 8501
        **settings,
    }


def stop_process_group(process, grace: float = 10.0) -> None:
    """Stop a server the test started with start_new_session=True (`dagster dev`, the daemon, a code server, whose
    children outlive a polite stop): the platform's own stop, SIGTERM to the group, SIGKILL to what is left."""
    from fic_assets.platform import processes

    processes.stop_group(process, grace)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05, details=lambda: ""):
    """Poll predicate until it returns something truthy and return that; AssertionError naming what (and
    details(), say a log's tail) after timeout seconds. predicate may raise to give up at once."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{details()}")
        time.sleep(interval)


def require(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; under CI=true a missing component fails the run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required test component missing under CI=true: {what}")
    pytest.skip(f"missing test component: {what}")


@pytest.fixture(scope="session")
def demo_shop_url():
    """The generated demo shop, served for real on 127.0.0.1 (free port) for the whole session."""
    from fic_assets.demo.shop.server import running_demo_shop

    with running_demo_shop(seed=42, port=0) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on a free port with a fresh data dir, for the whole session.

    Yields a fic_assets.defs.labelling.server.ServerConfig: .url, .token, .username, .password, .data_dir, .port.
    Its document root (local files it may serve) is the session's pytest temp dir, so files under any
    tmp_path can be imported. Label Studio's own venv (FIC_LABEL_STUDIO_VENV, default .venv-label-studio)
    is made once (~50 s) and reused by later runs; the first start of the fresh data dir migrates it (~20 s).
    """
    import dataclasses

    from fic_assets.defs.labelling import server

    data_dir = tmp_path_factory.mktemp("label-studio")
    config = dataclasses.replace(server.configured(free_port()), data_dir=data_dir,
                                 document_root=tmp_path_factory.getbasetemp())
    try:
        server.start_configured(config)
    except server.LabelStudioError as error:
        require(False, f"a Label Studio server ({error})")
    yield config
    server.stop(data_dir)


LABEL_STUDIO_DATABASE = "label_studio.sqlite3"  # Label Studio's SQLite file in its data dir


def copy_database(source_dir, target_dir) -> None:
    """Copy a running Label Studio's database with SQLite's backup API (consistent even while it is in use)."""
    import sqlite3

    target_dir.mkdir(parents=True, exist_ok=True)
    with (sqlite3.connect(source_dir / LABEL_STUDIO_DATABASE) as source,
          sqlite3.connect(target_dir / LABEL_STUDIO_DATABASE) as target):
        source.backup(target)


@pytest.fixture
def second_label_studio(label_studio, tmp_path):
    """Another Label Studio (same user and token) that a test may stop and restart, on a copy of the session's
    data: it starts in ~2.5 s, without the first start's migrations."""
    import dataclasses

    from fic_assets.defs.labelling import server

    copy_database(label_studio.data_dir, tmp_path / "data")
    config = dataclasses.replace(label_studio, url=server.local_url(free_port()), data_dir=tmp_path / "data")
    server.start_configured(config)
    yield config
    server.stop(config.data_dir)


class S3Server:
    """A running moto S3 server: what a DVC remote or boto3 client needs to reach the test bucket."""

    def __init__(self, endpoint_url: str, bucket: str, access_key_id: str, secret_access_key: str, process):
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.process = process


def _moto_answers(endpoint_url: str) -> bool:
    import requests

    try:
        return requests.get(f"{endpoint_url}/moto-api/", timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _moto_credentials(endpoint_url: str, bucket: str) -> tuple[str, str]:
    """An IAM user allowed s3:*, the bucket, then authentication switched on: only this user's keys work now.

    Moto accepts any key until told otherwise; enforcing it is what lets a test see wrong keys refused.
    """
    import json

    import boto3
    import requests

    session = boto3.session.Session(aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
                                    region_name="us-east-1")
    iam = session.client("iam", endpoint_url=endpoint_url)
    iam.create_user(UserName="fic-tests")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="fic-tests", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="fic-tests")["AccessKey"]
    session.client("s3", endpoint_url=endpoint_url).create_bucket(Bucket=bucket)
    requests.post(f"{endpoint_url}/moto-api/reset-auth", data=b"0", timeout=5).raise_for_status()
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3 API (moto_server) on a free loopback port with one bucket, for the whole session.

    Yields an S3Server: .endpoint_url, .bucket, .access_key_id, .secret_access_key (.process, its
    fic_assets.platform.processes.Recorded, for tests that need to know it). Requests must be signed with those
    keys; any other key is refused like MinIO would.
    """
    import sys
    from pathlib import Path

    from fic_assets.platform import processes

    binary = Path(sys.executable).parent / "moto_server"
    require(binary.exists(), f"moto_server next to {sys.executable} (pip install 'moto[server]')")
    endpoint_url = f"http://127.0.0.1:{free_port()}"
    root = tmp_path_factory.mktemp("moto")
    try:
        process = processes.start([str(binary), "-H", "127.0.0.1", "-p", endpoint_url.rsplit(":", 1)[1]],
                                  root / "moto.pid", root / "moto.log", lambda: _moto_answers(endpoint_url),
                                  what=f"moto_server on {endpoint_url}", timeout=30, url=endpoint_url)
    except processes.StartError as error:
        require(False, f"moto_server answering on {endpoint_url} ({error})")
    try:
        access_key_id, secret_access_key = _moto_credentials(endpoint_url, "fic-test-images")
        yield S3Server(endpoint_url, "fic-test-images", access_key_id, secret_access_key, process)
    finally:
        processes.stop(process.pid_file)


def pytest_configure(config):
    """One export of each ImageNet backbone per session, shared by every test and the subprocesses they start."""
    import tempfile

    os.environ.setdefault("FIC_BACKBONE_CACHE_DIR", tempfile.mkdtemp(prefix="fic-backbones-"))


# Small and quick, but the same code path as the defaults (fic_assets/defs/model/params.py).
FAST_TRAIN = {"input_size": 128, "cv_repeats": 1}


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A small real model dir (80 demo images, 128 px, a few seconds), trained once per session.

    For tests of what surrounds the model (predictions, sensors, the UI); test_model.py tests training itself.
    """
    from fic_assets.defs.model.data import make_folds, write_folds
    from fic_assets.demo.sample import write_demo_image_set
    from fic_assets.defs.model.train import train

    root = tmp_path_factory.mktemp("trained-model")
    write_demo_image_set(root / "images", 80, seed=3, width=240)
    folds = write_folds(make_folds(root / "images", folds=4, seed=1), root / "folds.json")
    train(folds, root / "images", FAST_TRAIN, root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def real_photos():
    """The folder of real shop photos (worn/, not_worn/): $FIC_REAL_PHOTOS, else ../shared/realphotos/images
    beside the repository. Never copied into the repo (their licences forbid it); missing fails under CI=true."""
    from pathlib import Path

    from fic_assets.platform.settings import REPO_ROOT

    folder = Path(os.environ.get("FIC_REAL_PHOTOS") or REPO_ROOT.parent / "shared" / "realphotos" / "images")
    require((folder / "worn").is_dir() and (folder / "not_worn").is_dir(), f"real photos at {folder} (set FIC_REAL_PHOTOS)")
    return folder
