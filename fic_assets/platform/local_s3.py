"""A local S3 endpoint for the offline demo: moto_server standing in for the compose stack's MinIO.

Only used when FIC_S3_ENDPOINT is the local default and nothing answers there. moto keeps objects in memory:
after a restart the bucket is empty, but DVC's local cache still holds every pushed version, so the next
`image_set` run (or `dvc push`) uploads them again. With the compose stack (or any real S3), nothing here runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import requests

from fic_assets.platform import settings

LOCAL_HOSTS = ("127.0.0.1", "localhost")


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


def ensure_local_s3() -> str | None:
    """Start moto_server on the endpoint's port when the endpoint is local and silent; returns what it did."""
    endpoint = settings.get("FIC_S3_ENDPOINT")
    parts = urlsplit(endpoint)
    if parts.hostname not in LOCAL_HOSTS:
        return None
    started = None
    if not answers(endpoint):
        data_dir = Path(settings.get("FIC_DATA_DIR"))
        data_dir.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).parent / "moto_server"
        with open(data_dir / "local-s3.log", "ab") as log:
            # Its own session, like the demo shop: it outlives this command so the UI's runs can push too.
            process = subprocess.Popen(
                [str(binary), "-H", parts.hostname, "-p", str(parts.port or 80)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        (data_dir / "local-s3.pid").write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 20
        while not answers(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start on {endpoint}; see {data_dir / 'local-s3.log'}")
            time.sleep(0.2)
        started = f"started moto_server on {endpoint} as the local S3 (stand-in for MinIO)"
    ensure_bucket(endpoint, settings.get("FIC_S3_BUCKET"), settings.get("FIC_S3_ACCESS_KEY"), settings.get("FIC_S3_SECRET_KEY"))
    return started or f"using the S3 endpoint at {endpoint}"
