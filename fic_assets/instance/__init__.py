"""The local Dagster instance (DAGSTER_HOME) used by the demo, the scripts and `dagster dev`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fic_assets import settings

TEMPLATE = Path(__file__).with_name("dagster.yaml")


def prepare_dagster_home() -> Path:
    """Use $DAGSTER_HOME, or data/dagster_home; give it the platform's dagster.yaml if it has none."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path(settings.get("FIC_DATA_DIR")) / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(TEMPLATE, config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
