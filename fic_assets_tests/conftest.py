"""Shared fixtures: real components started by the tests themselves."""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, what: str) -> None:
    """Skip locally when a component is missing; under CI=true a missing component fails the run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required test component missing under CI=true: {what}")
    pytest.skip(f"missing test component: {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def demo_shop_url():
    """The generated demo shop, served for real on 127.0.0.1 (free port) for the whole session."""
    from fic_assets.demo_shop.server import running_demo_shop

    with running_demo_shop(seed=42, port=0) as base_url:
        yield base_url
