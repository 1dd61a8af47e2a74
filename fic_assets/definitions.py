"""The fic code location: `dg dev`, `dg launch`, `dg check defs` and workspace.yaml load `defs` from here.

Everything is discovered in the `fic_assets/defs/` folder (one folder per domain; see its __init__.py).
"""

import importlib
import importlib.util
from pathlib import Path

import dagster as dg

from fic_assets.platform import settings

settings.apply_defaults()


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


def domain_defs(*domains: str) -> dg.Definitions:
    """Only some domains' Dagster layer (their assets, jobs and sensors modules), for tests and benchmarks that
    load a part of the platform; resources are theirs to add."""
    modules = [importlib.import_module(name) for domain in domains for kind in ("assets", "jobs", "sensors")
               if importlib.util.find_spec(name := f"fic_assets.defs.{domain}.{kind}") is not None]
    return dg.load_definitions_from_modules(modules)
