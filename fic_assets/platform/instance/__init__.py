"""The local Dagster instance (DAGSTER_HOME) used by the demo, the scripts and `dg dev` (scripts/ui)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from datetime import date
from pathlib import Path

import yaml

from fic_assets.platform import settings

TEMPLATE = Path(__file__).with_name("dagster.yaml")

# A top-level setting of a dagster.yaml: a key at column 0 (the template writes block style only).
TOP_LEVEL_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*:")


class InstanceConfigError(RuntimeError):
    """DAGSTER_HOME's dagster.yaml cannot be read or completed; the message names the file, which is left as it was."""


def ensure_pools(instance) -> None:
    """Create the `duckdb` pool's slots now. Dagster creates them on a run's first claim; two runs starting
    together on a fresh instance can race there (seen once in the reliability tests) and both get a slot."""
    from fic_assets.defs.shared import DUCKDB_POOL

    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.initialize_concurrency_limit_to_default(DUCKDB_POOL)


def template_sections(text: str) -> dict[str, str]:
    """The template's top-level settings as text, in file order, each with the comment lines right above it (so an
    added setting keeps its explanation); a comment followed by a blank line (the file's header) belongs to none."""
    sections: dict[str, list[str]] = {}
    pending: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        key = TOP_LEVEL_KEY.match(line)
        if key:
            current = sections[key.group(1)] = [*pending, line]
            pending = []
        elif line.startswith("#"):
            pending.append(line)
        elif not line.strip():
            pending = []
        elif current is not None:  # an indented line of the current setting
            current.extend(pending + [line])
            pending = []
    values = yaml.safe_load(text) or {}
    joined = {key: "".join(lines).rstrip("\n") + "\n" for key, lines in sections.items()}
    for key, section in joined.items():
        if yaml.safe_load(section) != {key: values[key]}:  # the template broke the block-style rule above
            raise RuntimeError(f"{TEMPLATE}: setting {key!r} could not be cut out on its own: keep it block style")
    if set(joined) != set(values):
        raise RuntimeError(f"{TEMPLATE}: top-level settings {sorted(set(values) - set(joined))} are not at column 0")
    return joined


def read_settings(config: Path) -> tuple[str, dict]:
    text = config.read_text(encoding="utf-8")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InstanceConfigError(
            f"{config} is not valid YAML, so the platform's settings could not be added to it (the file is left as "
            f"it was): {error}. Fix it, or move it away to get the platform's own ({TEMPLATE})") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise InstanceConfigError(f"{config} holds a YAML {type(loaded).__name__}, not a mapping of Dagster settings "
                                  "(the file is left as it was); fix it, or move it away to get the platform's own")
    return text, loaded


def valid_for_dagster(home: Path, text: str) -> str | None:
    """None when Dagster accepts text as home's dagster.yaml, else its reason (say, `concurrency: runs` beside a
    run_coordinator's max_concurrent_runs). The candidate is a file beside it, removed after."""
    from dagster._core.instance.config import dagster_instance_config

    candidate = home / f".dagster.yaml.fic-check-{os.getpid()}"
    candidate.write_text(text, encoding="utf-8")
    try:
        dagster_instance_config(str(home), config_filename=candidate.name)
        return None
    except Exception as error:  # noqa: BLE001  any refusal of Dagster's: report it, keep the setting out
        return str(error).splitlines()[0]
    finally:
        candidate.unlink(missing_ok=True)


def complete_instance_config(config: Path, template: Path = TEMPLATE) -> tuple[list[str], dict[str, str]]:
    """Give an existing dagster.yaml the template's top-level settings it lacks; returns (added, kept out: why).

    Every setting the file has stays exactly as written (its text is kept byte for byte and the missing settings
    are appended with their comments), so a user's value is never overwritten; only whole top-level settings are
    added, never keys inside one the user has. A setting Dagster refuses beside the user's (the template's
    `concurrency: runs` next to an old run_coordinator's max_concurrent_runs) is kept out and reported. The file is
    replaced atomically; malformed YAML raises InstanceConfigError and leaves it untouched.
    """
    text, current = read_settings(config)
    sections = template_sections(template.read_text(encoding="utf-8"))
    template_values = yaml.safe_load(template.read_text(encoding="utf-8"))
    missing = [key for key in sections if key not in current]
    if not missing:
        return [], {}
    base = text if not text or text.endswith("\n") else text + "\n"
    header = (f"\n# Added by fic on {date.today().isoformat()} from the platform's template ({template.name} in "
              "fic_assets/platform/instance/):\n# the settings this file did not have. The settings above are yours, as you wrote them.\n\n")

    def candidate(keys: list[str]) -> str:
        return base + header + "\n".join(sections[key] for key in keys)

    added, kept_out = [], {}
    for key in missing:  # one by one, so one refused setting does not keep the others out
        trial = candidate([*added, key])
        try:
            parsed = yaml.safe_load(trial)
        except yaml.YAMLError:
            parsed = None
        if parsed != {**current, **{name: template_values[name] for name in [*added, key]}}:
            kept_out[key] = "appending it does not read back as the file plus that setting (the file ends its YAML document?)"
            continue
        reason = valid_for_dagster(config.parent, trial)
        if reason is not None:
            kept_out[key] = f"Dagster refuses it beside this file's settings: {reason}"
            continue
        added.append(key)
    if added:
        partial = config.with_name(f".{config.name}.fic-{os.getpid()}")
        partial.write_text(candidate(added), encoding="utf-8")
        shutil.copymode(config, partial)
        os.replace(partial, config)
    return added, kept_out


def prepare_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or data/dagster_home; give it the platform's dagster.yaml if it has none, and an existing
    one the platform's settings it lacks (run monitoring, Python logs, ...), keeping everything it sets. Says on
    stderr what it added; SystemExit naming the file when that file is not valid YAML."""
    import dagster as dg

    home = Path(os.environ.get("DAGSTER_HOME") or Path(settings.get("FIC_DATA_DIR")) / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(TEMPLATE, config)
    else:
        try:
            added, kept_out = complete_instance_config(config)
        except InstanceConfigError as error:  # every caller is a command (fic demo, scripts/ui): no traceback
            raise SystemExit(f"error: {error}") from None
        if added:
            print(f"[fic] {config}: added the platform's settings it lacked: {', '.join(added)} "
                  "(your own settings are kept as they were)", file=sys.stderr)
        for key, why in kept_out.items():
            print(f"[fic] {config}: left out the platform's `{key}` setting: {why}", file=sys.stderr)
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ensure_pools(instance)
    return home
