"""Shared fixtures: real components started by the tests themselves."""

from __future__ import annotations

import os

import pytest

from fic_assets.net import free_port  # noqa: F401  (tests import it from here)

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; under CI=true a missing component fails the run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required test component missing under CI=true: {what}")
    pytest.skip(f"missing test component: {what}")


@pytest.fixture(scope="session")
def demo_shop_url():
    """The generated demo shop, served for real on 127.0.0.1 (free port) for the whole session."""
    from fic_assets.demo_shop.server import running_demo_shop

    with running_demo_shop(seed=42, port=0) as base_url:
        yield base_url


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on a free port with a fresh data dir, for the whole session.

    Yields a fic_assets.labelling.server.ServerConfig: .url, .token, .username, .password, .data_dir, .port.
    Its document root (local files it may serve) is the session's pytest temp dir, so files under any
    tmp_path can be imported. Label Studio's own venv (FIC_LABEL_STUDIO_VENV, default .venv-label-studio)
    is made once (~50 s) and reused by later runs; the first start of the fresh data dir migrates it (~20 s).
    """
    import dataclasses

    from fic_assets.labelling import server

    data_dir = tmp_path_factory.mktemp("label-studio")
    config = dataclasses.replace(server.configured(free_port()), data_dir=data_dir,
                                 document_root=tmp_path_factory.getbasetemp())
    try:
        server.start_configured(config)
    except server.LabelStudioError as error:
        require(False, f"a Label Studio server ({error})")
    yield config
    server.stop(data_dir)
