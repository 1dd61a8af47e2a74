"""Settings read from environment variables, with defaults for the local demo only.

Every setting the platform reads lives here so the README table and the code agree.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DEMO_SHOP_HOST = "127.0.0.1"
DEMO_SHOP_PORT = 8765
DEMO_SHOP_URL = f"http://{DEMO_SHOP_HOST}:{DEMO_SHOP_PORT}"

# name -> (default, help). Defaults only make sense for the local demo.
DEFAULTS: dict[str, tuple[str, str]] = {
    "FIC_DATA_DIR": (str(REPO_ROOT / "data"), "where DuckDB, crawl feeds and caches live"),
    "FIC_DUCKDB": ("", "DuckDB file (default: $FIC_DATA_DIR/fic.duckdb)"),
    "FIC_SHOP_URL": (DEMO_SHOP_URL, "shop base URL; https://www.zalando.de for the real site"),
    "FIC_BRAND_INDEX_PATH": ("/brands/", "path of the shop's brand index (/marken/ on zalando.de)"),
    "FIC_MAX_PAGES": ("0", "listing pages per brand, 0 = all"),
    "FIC_RENDER": ("none", "JavaScript rendering: none, playwright (Debian chromium) or splash"),
    "FIC_SPLASH_URL": ("http://127.0.0.1:8050", "Splash endpoint when FIC_RENDER=splash"),
    "FIC_HTTP_CACHE": ("false", "cache HTTP responses under crawler/.scrapy"),
}


def get(name: str) -> str:
    default, _ = DEFAULTS[name]
    value = os.environ.get(name, "")
    if value:
        return value
    if name == "FIC_DUCKDB":
        return str(Path(get("FIC_DATA_DIR")) / "fic.duckdb")
    return default


def apply_defaults() -> None:
    """Put the demo defaults into the environment so Dagster's EnvVar sees them.

    Dagster resources read settings through EnvVar (shown in the UI, resolved at
    launch); EnvVar has no default, so the code location sets one for each unset
    setting when it loads.
    """
    for name in DEFAULTS:
        os.environ.setdefault(name, get(name))
