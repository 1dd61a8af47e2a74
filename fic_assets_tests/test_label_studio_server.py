"""The local Label Studio server, for real: label-studio 1.23.2 in its own venv, started on 127.0.0.1.

The session fixture `label_studio` pays the slow first start (~20 s of migrations); the tests that stop a
server run a second one from a copy of its migrated database, which starts in ~2.5 s.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from label_studio_sdk import LabelStudio

from fic_assets.platform import settings
from fic_assets.defs.labelling import server
from fic_assets_tests.conftest import copy_database, free_port, require

LABELING_CONFIG = settings.REPO_ROOT / "label_studio" / "labeling_config.xml"
@contextmanager
def sdk(config: server.ServerConfig) -> Iterator[LabelStudio]:
    """The SDK client as the platform builds it; its HTTP connections are closed afterwards."""
    with httpx.Client(timeout=60) as http:
        yield LabelStudio(base_url=config.url, api_key=config.token, httpx_client=http)


def test_start_is_idempotent(label_studio: server.ServerConfig) -> None:
    before = server.running_server(label_studio.data_dir)
    started = time.monotonic()
    assert server.start_configured(label_studio) == label_studio.url
    assert time.monotonic() - started < 5
    assert before is not None and server.running_server(label_studio.data_dir) == before


def test_the_token_works_through_the_sdk(label_studio: server.ServerConfig) -> None:
    with sdk(label_studio) as client:
        assert isinstance(list(client.projects.list()), list)
    server.check_token(label_studio.url, label_studio.token)


def test_a_wrong_token_is_rejected_naming_the_url(label_studio: server.ServerConfig) -> None:
    with pytest.raises(server.LabelStudioAuthError, match=re.escape(label_studio.url)):
        server.check_token(label_studio.url, "0" * 40)
    ready, message = server.status(label_studio.url, label_studio.data_dir, "0" * 40)
    assert not ready and "rejected the API token" in message


def test_the_labelling_config_is_accepted(label_studio: server.ServerConfig) -> None:
    with sdk(label_studio) as client:
        project = client.projects.create(title="config check", label_config=LABELING_CONFIG.read_text())
    choices = project.parsed_label_config["label"]
    assert choices["type"] == "Choices" and choices["to_name"] == ["image"]
    assert choices["labels"] == ["worn", "not_worn", "unusable"]
    assert [choices["labels_attrs"][value]["hotkey"] for value in choices["labels"]] == ["1", "2", "3"]


class Other(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not Label Studio")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_start_on_a_port_busy_with_another_server_fails_clearly(label_studio: server.ServerConfig,
                                                                 tmp_path: Path) -> None:
    other = ThreadingHTTPServer((server.HOST, 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        config = dataclasses.replace(label_studio, url=server.local_url(other.server_address[1]), data_dir=tmp_path)
        with pytest.raises(server.LabelStudioError, match="busy with something that is not Label Studio"):
            server.start_configured(config)
    finally:
        other.shutdown()
        other.server_close()
    assert not server.pid_path(tmp_path).exists()


def test_a_port_taken_while_starting_is_detected(label_studio: server.ServerConfig, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Label Studio moves to port+1 when its port is taken; start() must fail instead of returning a wrong URL."""
    copy_database(label_studio.data_dir, tmp_path)
    with socket.socket() as taken:
        taken.bind((server.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The race: the port looked free when start() checked it, and was taken before Label Studio bound it.
        monkeypatch.setattr(server, "port_is_free", lambda host, port: True)
        monkeypatch.setattr(server, "probe", lambda url: None)
        with pytest.raises(server.LabelStudioError, match=f"port {port} was taken"):
            server.start_configured(dataclasses.replace(label_studio, url=server.local_url(port), data_dir=tmp_path))
    assert not server.pid_path(tmp_path).exists()
    assert f"Port {port} is in use" in server.log_path(tmp_path).read_text()


def test_projects_persist_across_stop_and_start(second_label_studio: server.ServerConfig) -> None:
    config = second_label_studio
    with sdk(config) as client:
        project = client.projects.create(title="persistence check", label_config=LABELING_CONFIG.read_text())
    first_pid = server.running_server(config.data_dir)
    assert server.stop(config.data_dir).startswith("stopped Label Studio")
    assert server.probe(config.url) is None and server.running_server(config.data_dir) is None

    started = time.monotonic()
    assert server.start_configured(config) == config.url
    restart_seconds = time.monotonic() - started
    assert restart_seconds < 30, restart_seconds  # ~2.5 s on the project machine: no migrations
    assert server.running_server(config.data_dir) != first_pid
    with sdk(config) as client:
        assert client.projects.get(id=project.id).title == "persistence check"


def test_stop_when_nothing_runs_is_a_no_op(tmp_path: Path) -> None:
    assert server.stop(tmp_path) == f"no Label Studio running for {tmp_path}"
    exited = subprocess.Popen(["true"])
    exited.wait()
    server.pid_path(tmp_path).write_text(f"{exited.pid} 8080\n")  # a stale pid file
    assert server.stop(tmp_path) == f"no Label Studio running for {tmp_path}"
    assert not server.pid_path(tmp_path).exists()


@pytest.fixture
def label_studio_env(label_studio: server.ServerConfig, monkeypatch: pytest.MonkeyPatch) -> server.ServerConfig:
    """The settings pointed at the session's server, as a person would export them."""
    for name, value in {
        "FIC_LABEL_STUDIO_URL": label_studio.url,
        "FIC_LABEL_STUDIO_TOKEN": label_studio.token,
        "FIC_LABEL_STUDIO_USER": label_studio.username,
        "FIC_LABEL_STUDIO_PASSWORD": label_studio.password,
        "FIC_LABEL_STUDIO_DATA_DIR": str(label_studio.data_dir),
        "FIC_LABEL_STUDIO_VENV": str(label_studio.venv_dir),
    }.items():
        monkeypatch.setenv(name, value)
    return label_studio


def test_the_fic_command_starts_and_reports(label_studio_env: server.ServerConfig,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from fic_assets.cli import main as fic

    assert fic(["label-studio", "start"]) == 0
    out = capsys.readouterr().out
    assert f"Label Studio is up: {label_studio_env.url}" in out and label_studio_env.username in out
    assert fic(["label-studio", "status"]) == 0
    assert "the token is accepted" in capsys.readouterr().out
    assert fic(["label-studio", "status", "--port", str(free_port())]) == 1
    assert f"runs on {label_studio_env.url}" in capsys.readouterr().out
    assert fic(["label-studio", "start", "--port", str(free_port())]) == 1  # one server per data dir
    assert f"already runs on {label_studio_env.url}" in capsys.readouterr().err


def test_the_start_script_prints_url_and_login(label_studio_env: server.ServerConfig) -> None:
    python = settings.REPO_ROOT / ".venv" / "bin" / "python"
    require(python.exists(), f"the platform venv {python} (scripts/setup)")
    done = subprocess.run([str(settings.REPO_ROOT / "label_studio" / "start")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert label_studio_env.url in done.stdout and label_studio_env.username in done.stdout
