"""A local S3 endpoint for the offline demo: moto_server standing in for the compose stack's MinIO.

Only used when FIC_S3_ENDPOINT is the local default and nothing answers there. moto keeps objects in memory:
after a restart the bucket is empty, but DVC's local cache still holds every pushed version, so the next
`image_set` run (or `dvc push`) uploads them again. With the compose stack (or any real S3), nothing here runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import requests

from fic_assets.platform import processes, settings

LOCAL_HOSTS = ("127.0.0.1", "localhost")
START_TIMEOUT = 20.0


def answers(endpoint_url: str) -> bool:
    try:
        requests.get(endpoint_url, timeout=1)
        return True
    except requests.RequestException:
        return False


def ensure_bucket(endpoint_url: str, bucket: str, access_key: str, secret_key: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint_url, aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name="us-east-1")
    existing = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)


def pid_file() -> Path:
    return processes.data_dir() / "local-s3.pid"


def ensure_local_s3() -> str | None:
    """Start moto_server on the endpoint's port when the endpoint is local and silent; returns what it did."""
    endpoint = settings.get("FIC_S3_ENDPOINT")
    parts = urlsplit(endpoint)
    if parts.hostname not in LOCAL_HOSTS:
        return None
    started = None
    if not answers(endpoint):
        binary = Path(sys.executable).parent / "moto_server"
        # Detached, like the demo shop: it outlives this command so the UI's runs can push too.
        processes.start([str(binary), "-H", parts.hostname, "-p", str(parts.port or 80)], pid_file(),
                        processes.data_dir() / "local-s3.log", lambda: answers(endpoint),
                        what=f"moto_server on {endpoint}", timeout=START_TIMEOUT, url=endpoint)
        started = f"started moto_server on {endpoint} as the local S3 (stand-in for MinIO)"
    ensure_bucket(endpoint, settings.get("FIC_S3_BUCKET"), settings.get("FIC_S3_ACCESS_KEY"), settings.get("FIC_S3_SECRET_KEY"))
    return started or f"using the S3 endpoint at {endpoint}"
