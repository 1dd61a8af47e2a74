"""Settings read from environment variables, with defaults for the local demo only.

Every setting the platform reads lives here so the README table and the code agree.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # fic_assets/platform/settings.py -> the repository

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
    # Label Studio (fic_assets/defs/labelling/server.py). User, password and token are applied on the FIRST start of
    # a data dir only; later changes need a fresh FIC_LABEL_STUDIO_DATA_DIR.
    "FIC_LABEL_STUDIO_URL": ("http://127.0.0.1:8080", "Label Studio base URL; `fic label-studio start` uses its port"),
    "FIC_LABEL_STUDIO_TOKEN": ("c667cebc1a4e6da81ac9fd55131451a165fa703c", "Label Studio API token (demo value)"),
    "FIC_LABEL_STUDIO_USER": ("admin@fic.local", "Label Studio login e-mail, created on the first start"),
    "FIC_LABEL_STUDIO_PASSWORD": ("fic-demo-password", "Label Studio login password (demo value)"),
    "FIC_LABEL_STUDIO_DATA_DIR": ("", "Label Studio's database, log, pid file (default: $FIC_DATA_DIR/label_studio)"),
    "FIC_LABEL_STUDIO_VENV": (str(REPO_ROOT / ".venv-label-studio"), "label-studio's own venv, made on first start"),
    "FIC_LABEL_STUDIO_DOCUMENT_ROOT": ("", "local files Label Studio may serve (default: $FIC_DATA_DIR)"),
    "FIC_PARAMS_FILE": (str(REPO_ROOT / "params.yaml"), "training parameters (the file dvc.yaml's stages read too)"),
    "FIC_MODELS_DIR": (str(REPO_ROOT / "models"), "trained models (models/<version>/) and the production pointer models/production.json"),
    "FIC_RELABEL_MIN_LABELS": ("50", "new human labels since the last labelling round that start the next one"),
    "FIC_SENSOR_INTERVAL_SECONDS": ("", "if set, every sensor's minimum interval between ticks (default: each sensor's own, 30-60 s)"),
    "FIC_INFERENCE_THREADS": ("0", "OpenVINO threads for predictions, 0 = every core"),
    "FIC_INFERENCE_PRECISION": ("f32", "OpenVINO inference precision for predictions: f32, or bf16 (faster on CPUs with AMX)"),
    "FIC_REPORTS_DIR": (str(REPO_ROOT / "reports"), "where `brand_report` writes the static HTML report and its plots"),
    "FIC_DASHBOARD_PORT": ("8501", "the port `fic dashboard` listens on by default and `fic demo` starts it on (127.0.0.1)"),
    "FIC_ANALYTICS_DIR": ("", "the read-only analytics snapshots (Parquet) `analytics_snapshot` writes and the report and dashboard read (default: $FIC_DATA_DIR/analytics)"),
    # The training image set (fic_assets/defs/dataset/) and its DVC remote. S3 defaults are the compose stack's MinIO.
    "FIC_BACKBONE_CACHE_DIR": ("", "the ImageNet backbones exported for training, once per arch and input size (default: $FIC_DATA_DIR/cache/backbones)"),
    "FIC_IMAGE_CACHE_DIR": ("", "downloaded image bytes keyed by URL (default: $FIC_DATA_DIR/cache/images)"),
    # Image downloads (fic_assets/defs/dataset/download.py), for the image set and for predictions. A product image
    # on a CDN arrives in well under a second; 30 s per try is generous for a slow link and still means a
    # trickling host costs a run seconds per image, not hours. 20 MB is several times the largest product photo
    # a shop serves (zalando's largest are ~2-5 MB) and bounds what one image may take in memory and cache.
    "FIC_IMAGE_DEADLINE_SECONDS": ("30", "total time one image download try may take: connect, headers and body"),
    "FIC_IMAGE_MAX_BYTES": (str(20 * 1024 * 1024), "largest image body accepted, in bytes; a larger one is an error"),
    # Per image host (a CDN): 4 requests in flight and 10 request starts a second at most, like the crawler's
    # 4 per domain; the loopback demo shop is our own process and is not paced.
    "FIC_IMAGE_HOST_CONCURRENCY": ("4", "image requests in flight to one host at most (loopback demo host: no limit)"),
    "FIC_IMAGE_HOST_DELAY_SECONDS": ("0.1", "least time between two image request starts to one host (loopback: none)"),
    "FIC_PREDICTION_CHUNK_SIZE": ("2000", "predictions written to DuckDB per transaction; a crash or stop loses at most one chunk"),
    "FIC_IMAGE_SET_DIR": (str(REPO_ROOT / "datasets" / "images"), "the labelled image set (worn/, not_worn/); DVC pointer <dir>.dvc beside it"),
    "FIC_DVC_ROOT": (str(REPO_ROOT), "the DVC project (its .dvc/ directory) that versions the image set"),
    "FIC_S3_ENDPOINT": ("http://127.0.0.1:9000", "S3 endpoint of the DVC remote (the compose stack's MinIO)"),
    "FIC_S3_BUCKET": ("fic-images", "bucket of the DVC remote"),
    "FIC_S3_PREFIX": ("dvc", "key prefix of the DVC remote inside the bucket"),
    "FIC_S3_ACCESS_KEY": ("minioadmin", "S3 access key id (demo value; written to .dvc/config.local only)"),
    "FIC_S3_SECRET_KEY": ("minioadmin", "S3 secret access key (demo value; written to .dvc/config.local only)"),
}


def get(name: str) -> str:
    default, _ = DEFAULTS[name]
    value = os.environ.get(name, "")
    if value:
        return value
    if name == "FIC_DUCKDB":
        return str(Path(get("FIC_DATA_DIR")) / "fic.duckdb")
    if name == "FIC_ANALYTICS_DIR":
        return str(Path(get("FIC_DATA_DIR")) / "analytics")
    return default


def apply_defaults() -> None:
    """Put the demo defaults into the environment so Dagster's EnvVar sees them.

    Dagster resources read settings through EnvVar (shown in the UI, resolved at
    launch); EnvVar has no default, so the code location sets one for each unset
    setting when it loads.
    """
    for name in DEFAULTS:
        os.environ.setdefault(name, get(name))


def sensor_interval(default: int) -> int:
    """A sensor's minimum interval: FIC_SENSOR_INTERVAL_SECONDS when set (tests tick fast), else its own default."""
    value = os.environ.get("FIC_SENSOR_INTERVAL_SECONDS", "")
    return int(value) if value else default
