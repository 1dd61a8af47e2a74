"""Reading the docker-compose stack without a Docker engine, for test_compose.py and test_docker_image.py:
docker-compose.yml as compose reads it (PyYAML with compose's `${VAR:-default}` interpolation), the Dockerfile's
instructions, .dockerignore's patterns, and the settings the code reads (every dg.EnvVar)."""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import yaml


REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
WORKSPACE = REPO / "deploy" / "workspace.yaml"
DEPLOY_DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
ENV_EXAMPLE = REPO / "deploy" / "env.example"
MINIO_INIT = REPO / "deploy" / "minio-init.sh"

SERVICES = {"postgres", "code", "webserver", "daemon", "minio", "minio-init", "label-studio", "splash", "demo-shop",
            "dashboard"}
DAGSTER_SERVICES = ("code", "webserver", "daemon")
# Settings of the local Label Studio server (`fic label-studio start`), which the label-studio service replaces, and
# the port of the local dashboard `fic demo` starts (the dashboard service's command names its own).
LOCAL_ONLY_SETTINGS = {"FIC_LABEL_STUDIO_DATA_DIR", "FIC_LABEL_STUDIO_VENV", "FIC_LABEL_STUDIO_DOCUMENT_ROOT",
                       "FIC_DASHBOARD_PORT"}
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
