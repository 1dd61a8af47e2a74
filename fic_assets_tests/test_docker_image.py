"""The Docker image (Dockerfile, .dockerignore), checked without a Docker engine: what it COPYs exists and is in
the build context, its CMD is the compose code service's, it installs the pinned project, and the image layout it
builds (rebuilt in a temp dir from its COPY lines) loads the code location in a real code server and serves the
demo shop for the stack's host. The compose file itself: test_compose.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from fic_assets_tests.conftest import free_port, stop_process_group
from fic_assets_tests.stack import (
    DEPLOY_DAGSTER_YAML,
    DOCKERFILE,
    REPO,
    command_of,
    dockerfile_cmd,
    dockerfile_copies,
    dockerfile_env,
    dockerfile_instructions,
    dockerignore_patterns,
    environment,
    ignored,
    load_compose,
    option,
)

# --- the Dockerfile ------------------------------------------------------------------------------------------

def test_dockerfile_base_home_and_instance():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    home = dockerfile_env(instructions)["DAGSTER_HOME"]
    copies = dockerfile_copies(instructions)
    assert (["deploy/dagster.yaml"], f"{home}/dagster.yaml") in copies
    assert not any(destination.startswith(home) and sources != ["deploy/dagster.yaml"] for sources, destination in copies)


def test_dockerfile_copies_exist_and_are_in_the_build_context():
    patterns = dockerignore_patterns()
    copies = dockerfile_copies(dockerfile_instructions())
    sources = [source for group, _ in copies for source in group]
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repo"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    # What the code reads beside fic_assets/ at run time, and what pip needs to install the project.
    for needed in ("fic_assets", "crawler", "label_studio", "params.yaml", "dvc.yaml", ".dvc/config",
                   "pyproject.toml", "README.md", "deploy/dagster.yaml", "deploy/workspace.yaml"):
        assert needed in sources, f"the image does not copy {needed}"
    # Keys, data and virtualenvs stay out of the build context.
    for secret in (".dvc/config.local", ".env", "data/fic.duckdb", "models/production.json", ".venv/bin/python",
                   ".venv-label-studio/bin/python", ".git/config", "fic_assets/__pycache__/x.pyc", "datasets/images/a.jpg"):
        assert ignored(secret, patterns), f"{secret} would be sent to the Docker build"
    assert not ignored("fic_assets/defs/reports/templates/index.html.j2", patterns)  # root-anchored patterns only


def test_dockerignore_matcher():
    patterns = [(False, re.compile(r"data\Z")), (False, re.compile(r"(?:.*/)?__pycache__\Z")), (True, re.compile(r"data/keep\Z"))]
    assert ignored("data/x/y", patterns) and not ignored("fic_assets/data/x", patterns)
    assert ignored("a/b/__pycache__/c.pyc", patterns) and not ignored("data/keep", patterns)


def test_dockerfile_cmd_is_the_code_service_command():
    cmd = dockerfile_cmd(dockerfile_instructions())
    services = load_compose()["services"]
    assert command_of(services["code"]) == cmd
    assert cmd[:3] == ["dagster", "code-server", "start"] and option(cmd, "-m", "--module-name") == "fic_assets.definitions"
    assert option(cmd, "-h", "--host") == "0.0.0.0"


def test_dockerfile_installs_the_pinned_project():
    text = DOCKERFILE.read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$", "\n".join(project["dependencies"]), re.M))
    # Dependencies from pyproject.toml itself (no second list to drift), the project without re-resolving them.
    assert re.search(r'tomllib\.load\(open\("pyproject\.toml"', text) and '["project"]["dependencies"]' in text
    assert "pip install --no-deps -e ." in text
    # The instance's storage (deploy/dagster.yaml) is installed, in the version that goes with dagster's pin:
    # dagster 1.X.Y <-> dagster-postgres 0.(X+16).Y.
    major, minor, patch = pins["dagster"].split(".")
    assert pins.get("dagster-postgres") == f"0.{int(minor) + 16}.{patch}", "pyproject.toml should pin dagster-postgres"
    assert "TORCH_INDEX_URL" in text


def test_instance_config_uses_an_installed_postgres_driver():
    """deploy/dagster.yaml's Postgres URL scheme names a driver the image has (dagster-postgres brings psycopg2).

    SQLAlchemy 2.1 made plain `postgresql://` mean psycopg 3, which neither dagster-postgres nor pyproject.toml
    installs: the instance then fails with "No module named 'psycopg'".
    """
    import sqlalchemy.dialects.postgresql as postgresql

    config = yaml.safe_load(DEPLOY_DAGSTER_YAML.read_text())
    scheme = config["storage"]["postgres"]["postgres_db"].get("scheme", "postgresql")
    driver = scheme.split("+", 1)[1] if "+" in scheme else postgresql.dialect.driver
    text = DOCKERFILE.read_text() + (REPO / "pyproject.toml").read_text()
    installed = {"psycopg2"} | ({"psycopg"} if re.search(r"psycopg\[binary\]|psycopg==", text) else set())
    assert driver in installed, (f"deploy/dagster.yaml's scheme {scheme!r} needs the {driver!r} driver, which the "
                                 f"image does not install: set `scheme: postgresql+psycopg2` under postgres_db")


# --- the image's layout, rebuilt from the Dockerfile's COPY lines --------------------------------------------

def build_layout(root: Path) -> Path:
    """Copy what the Dockerfile COPYs (minus .dockerignore) to root + its destinations; returns the WORKDIR."""
    import shutil

    patterns = dockerignore_patterns()
    instructions = dockerfile_instructions()
    for sources, destination in dockerfile_copies(instructions):
        for source in sources:
            target = root / destination.lstrip("/")
            if destination.endswith("/") or len(sources) > 1:
                target = target / Path(source).name
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, target, ignore=lambda directory, names: [
                    name for name in names if ignored(str((Path(directory) / name).relative_to(REPO)), patterns)])
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    workdir = [arguments for keyword, arguments in instructions if keyword == "WORKDIR"][-1]
    return root / workdir.lstrip("/")


def image_env(root: Path, app: Path, home: Path) -> dict[str, str]:
    """The code service's environment with /opt/dagster moved under root, importing the code from the layout."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FIC_", "DAGSTER_"))}
    for name, value in environment(load_compose()["services"]["code"]).items():
        env[name] = value.replace("/opt/dagster", str(root / "opt" / "dagster"))
    # A local instance here: deploy/dagster.yaml needs the stack's Postgres (test_postgres_instance.py runs it).
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONPATH"] = f"{app}{os.pathsep}{app / 'crawler'}"  # what the image's editable install maps
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


CHECK_LAYOUT = """
import json, sys
import fic_assets, fic_crawler
from fic_assets.platform import settings
from fic_assets.definitions import defs as load_defs
from fic_assets.defs.labelling.client import instructions, labeling_config
from fic_assets.defs.crawl.crawler import CRAWLER_PROJECT_DIR
repository = load_defs().get_repository_def()
print(json.dumps({
    "fic_assets": fic_assets.__file__, "fic_crawler": fic_crawler.__file__, "repo_root": str(settings.REPO_ROOT),
    "scrapy_cfg": (CRAWLER_PROJECT_DIR / "scrapy.cfg").is_file(), "params": settings.get("FIC_PARAMS_FILE"),
    "labeling_config": len(labeling_config()), "instructions": len(instructions()),
    "jobs": sorted(job.name for job in repository.get_all_jobs()),
    "duckdb": settings.get("FIC_DUCKDB"),
}))
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    app = build_layout(root)
    home = root / "local-dagster-home"
    home.mkdir()
    return root, app, image_env(root, app, home)


def test_image_layout_loads_the_code_location(layout):
    root, app, env = layout
    assert (root / "opt/dagster/home/dagster.yaml").read_bytes() == DEPLOY_DAGSTER_YAML.read_bytes()
    assert (root / "opt/dagster/deploy/workspace.yaml").is_file()
    assert not list(app.rglob("__pycache__"))
    done = subprocess.run([sys.executable, "-c", CHECK_LAYOUT], cwd=app, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(found["fic_assets"]).is_relative_to(app) and Path(found["fic_crawler"]).is_relative_to(app)
    assert Path(found["repo_root"]) == app and found["scrapy_cfg"]
    assert Path(found["params"]) == app / "params.yaml" and Path(found["params"]).is_file()
    assert found["labeling_config"] > 0 and found["instructions"] > 0
    assert {"crawl_job", "retrain_job"} <= set(found["jobs"])
    assert Path(found["duckdb"]).is_relative_to(root / "opt/dagster/data")


def test_image_command_serves_the_code_location(layout):
    """The Dockerfile's CMD (on a free loopback port) serves the definitions, loaded without error, over gRPC."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster._utils.error import SerializableErrorInfo


    root, app, env = layout
    port = free_port()
    command = dockerfile_cmd(dockerfile_instructions())
    command[command.index("-p") + 1] = str(port)
    command[command.index("-h") + 1] = "127.0.0.1"
    log = root / "code-server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=app, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        deadline = time.monotonic() + 240
        response = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                response = deserialize_value(client.list_repositories())
                break
            except Exception:  # not serving yet
                time.sleep(1)
        assert response is not None, f"the code server did not answer:\n{log.read_text()[-5000:]}"
        assert not isinstance(response, SerializableErrorInfo), response.to_string()
        names = [symbol.repository_name for symbol in response.repository_symbols]
        assert names == ["__repository__"], names
        health = subprocess.run(services_healthcheck(port), env=env, capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        stop_process_group(server)  # the code server's own gRPC child outlives a SIGTERM to the group leader


def services_healthcheck(port: int) -> list[str]:
    test = load_compose()["services"]["code"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = list(test[1:])
    command[command.index("-p") + 1] = str(port)
    return command


def test_demo_shop_command_serves_pages_for_the_stack_host(layout):
    """The demo-shop service's command (on loopback here) answers, and its links name the host asked for."""
    from fic_assets.platform.processes import stop_group

    root, app, env = layout
    port = free_port()
    command = command_of(load_compose()["services"]["demo-shop"])
    command = [sys.executable, "-m", "fic_assets.cli", *command[1:]]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    server = subprocess.Popen(command, cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_demo/health", timeout=2) as answer:
                    assert json.loads(answer.read())["seed"] == 42
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the demo shop did not start"
                time.sleep(0.2)
        # Inside the stack the crawler asks for http://demo-shop:8765/...: the product and image URLs it stores
        # must name that host (the truth CSV lists them as the pages do).
        shop_url = environment(load_compose()["services"]["code"])["FIC_SHOP_URL"]
        request = urllib.request.Request(f"{base}/_demo/truth.csv", headers={"Host": urlsplit(shop_url).netloc})
        with urllib.request.urlopen(request, timeout=30) as answer:
            lines = answer.read().decode().splitlines()
        assert len(lines) > 100 and f"{shop_url}/img/" in lines[1] and f"127.0.0.1:{port}" not in "\n".join(lines)
    finally:
        stop_group(server)
