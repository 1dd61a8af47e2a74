"""The local Dagster instance (DAGSTER_HOME) used by the demo, the scripts and `dg dev` (scripts/ui)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fic_assets.platform import settings

TEMPLATE = Path(__file__).with_name("dagster.yaml")


def ensure_pools(instance) -> None:
    """Create the `duckdb` pool's slots now. Dagster creates them on a run's first claim; two runs starting
    together on a fresh instance can race there (seen once in the reliability tests) and both get a slot."""
    from fic_assets.defs.shared import DUCKDB_POOL

    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.initialize_concurrency_limit_to_default(DUCKDB_POOL)


def prepare_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or data/dagster_home; give it the platform's dagster.yaml if it has none."""
    import dagster as dg

    home = Path(os.environ.get("DAGSTER_HOME") or Path(settings.get("FIC_DATA_DIR")) / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(TEMPLATE, config)
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        ensure_pools(instance)
    return home
