"""Reliability of the image set's remote, for real (moto S3 behind a TCP switch, DVC): S3 going down during
`dvc push` fails the run clearly, and the next run pushes everything."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from fic_assets.platform.warehouse import DuckDBResource
from fic_assets_tests.reliability import TcpSwitch, error_chain


# --- 2. S3 down during `dvc push` ----------------------------------------------------------------------------


def remote_keys(s3, prefix: str) -> set[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key_id,
                          aws_secret_access_key=s3.secret_access_key, region_name="us-east-1")
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=f"{prefix}/"):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def dvc_objects(project: Path, digest: str, prefix: str) -> set[str]:
    """The remote keys a pushed image set consists of: every file's md5 object and the .dir listing itself."""
    listing = json.loads((project / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).read_text())
    return {f"{prefix}/files/md5/{entry['md5'][:2]}/{entry['md5'][2:]}" for entry in listing} | {f"{prefix}/files/md5/{digest[:2]}/{digest[2:]}"}


def test_s3_going_down_during_dvc_push_fails_the_run_clearly_and_the_next_run_pushes_everything(demo_shop_url, s3, tmp_path, monkeypatch):
    """Bad input: the S3 endpoint dies in the middle of `dvc push` (after the first uploads went through: new
    connections refused, open ones reset), then comes back on the same address.

    The image_set run fails with an error naming the endpoint; the next run completes and every object of the
    image set is in the bucket. botocore's own retries are turned down (AWS_MAX_ATTEMPTS=1) so the outage is
    reported in seconds, not after a minute of backoff that ends in the same error."""
    from fic_assets.defs.dataset.assets import image_set
    from fic_assets.defs.dataset.dvc import ImageSetStore
    from fic_assets_tests.test_model_assets import labelled_demo_images, seed_labels

    monkeypatch.setenv("FIC_DATA_DIR", str(tmp_path / "data"))  # the image cache
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    switch = TcpSwitch(int(s3.endpoint_url.rsplit(":", 1)[1]), cut_after_puts=5).up()
    project, prefix = tmp_path / "project", f"reliability-{tmp_path.name}"
    resources = {
        "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb")),
        "image_store": ImageSetStore(dvc_root=str(project), image_set_dir=str(project / "datasets" / "images"), endpoint_url=switch.url,
                                     bucket=s3.bucket, prefix=prefix, access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key),
    }
    seed_labels(resources["duckdb"], labelled_demo_images(demo_shop_url))
    try:
        with dg.instance_for_test() as instance:
            failed = dg.materialize([image_set], resources=resources, instance=instance, raise_on_error=False)
            assert switch.puts >= 5 and not switch.is_up  # it went down mid-transfer, not before
            assert not failed.success
            assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
            error = error_chain(next(event for event in failed.all_events if event.is_step_failure).step_failure_data.error)
            assert f"DvcError: S3 remote at {switch.url} is not reachable" in error, error
            assert "is the S3 service, MinIO in the compose stack, running?" in error
            assert not failed.asset_materializations_for_node("image_set")
            partial = remote_keys(s3, prefix)

            switch.cut_after_puts = None
            switch.up()  # S3 is back, same endpoint
            result = dg.materialize([image_set], resources=resources, instance=instance, raise_on_error=False)
            assert result.success
            digest = result.asset_materializations_for_node("image_set")[0].metadata["dvc_hash"].value
    finally:
        switch.down()
    expected = dvc_objects(project, digest, prefix)
    assert len(expected) == 48 + 1  # 24 worn + 24 not worn images (the 3 broken ones rejected), and the listing
    assert len(partial) < len(expected)  # the failed push really stopped part-way
    assert remote_keys(s3, prefix) == expected
