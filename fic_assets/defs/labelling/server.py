"""`fic label-studio`: run a real Label Studio server on 127.0.0.1 as a component of the platform.

    fic label-studio start [--port P]    start it detached (idempotent), print the URL and the login
    fic label-studio stop                stop the server of FIC_LABEL_STUDIO_DATA_DIR
    fic label-studio status [--port P]   does Label Studio answer there, and does it accept the token?

label-studio pins packages that clash with the platform's, so it lives in its own virtualenv
(FIC_LABEL_STUDIO_VENV), made on the first start (about a minute). Its data dir (FIC_LABEL_STUDIO_DATA_DIR)
holds the SQLite database, label-studio.log and label-studio.pid. The user, password and API token are
created on the FIRST start of a data dir only: changing them later needs a fresh data dir.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fic_assets.platform import processes, progress, settings
from fic_assets.defs.labelling.errors import LabelStudioAuthError, LabelStudioError
from fic_assets.platform.net import port_is_free

LABEL_STUDIO_VERSION = "1.23.2"
HOST = "127.0.0.1"
LOG_NAME = "label-studio.log"
PID_NAME = "label-studio.pid"
START_TIMEOUT = 120.0  # first start of a data dir: ~20 s of migrations on the project machine
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 30
# The platform venv's variables would make label-studio's Python or Django load the wrong things.
NOT_INHERITED = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE")

@dataclass(frozen=True)
class ServerConfig:
    """One local Label Studio: where it answers, how to log in, where it keeps its data."""

    url: str
    token: str
    username: str
    password: str
    data_dir: Path
    venv_dir: Path
    document_root: Path

    @property
    def port(self) -> int:
        return url_port(self.url)


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def local_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def configured(port: int | None = None) -> ServerConfig:
    """The server the settings describe; `port` replaces the port of FIC_LABEL_STUDIO_URL."""
    data_dir = Path(settings.get("FIC_DATA_DIR"))
    url = settings.get("FIC_LABEL_STUDIO_URL").rstrip("/")
    return ServerConfig(
        url=local_url(port) if port else url,
        token=settings.get("FIC_LABEL_STUDIO_TOKEN"),
        username=settings.get("FIC_LABEL_STUDIO_USER"),
        password=settings.get("FIC_LABEL_STUDIO_PASSWORD"),
        data_dir=Path(settings.get("FIC_LABEL_STUDIO_DATA_DIR") or data_dir / "label_studio").absolute(),
        venv_dir=Path(settings.get("FIC_LABEL_STUDIO_VENV")).absolute(),
        document_root=Path(settings.get("FIC_LABEL_STUDIO_DOCUMENT_ROOT") or data_dir).absolute(),
    )


# --- the virtualenv ----------------------------------------------------------------------------------------

@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path: two test sessions must not pip-install into one venv at once."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_install_step(command: list[str], what: str) -> None:
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode == 0:
        return
    # pip repeats a harmless warning for every package this machine's extra index lacks; keep the real error.
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "is ignored: it is neither" not in line]
    tail = "\n".join(lines[-LOG_TAIL_LINES:])
    raise LabelStudioError(f"could not {what} (exit code {done.returncode}): {' '.join(command)}\n{tail}")


def ensure_venv(venv_dir: Path) -> Path:
    """Return the venv's `label-studio` executable, creating the venv and installing label-studio when missing.

    A stamp written after a successful pip install marks the venv complete, so an interrupted install is
    finished on the next call instead of leaving a half-installed venv in use.
    """
    venv_dir = Path(venv_dir).absolute()
    executable = venv_dir / "bin" / "label-studio"
    stamp = venv_dir / f".fic-label-studio-{LABEL_STUDIO_VERSION}"
    if stamp.exists() and executable.exists():
        return executable
    venv_dir.mkdir(parents=True, exist_ok=True)
    # The default venv sits in the repo: keep git from ever seeing it (as Python 3.13's venv does).
    (venv_dir / ".gitignore").write_text("*\n")
    with file_lock(venv_dir / ".fic-install.lock"):
        if stamp.exists() and executable.exists():  # another process finished it while we waited
            return executable
        print(f"installing label-studio=={LABEL_STUDIO_VERSION} into {venv_dir} (once, about a minute)",
              file=sys.stderr, flush=True)
        python = venv_dir / "bin" / "python"
        # On a terminal, two steps whose clock shows the ~50 s pip install is alive (pip's own bar is off).
        steps = progress.bar(total=2, desc="label-studio: virtualenv", unit="step")
        if not python.exists():
            run_install_step([sys.executable, "-m", "venv", str(venv_dir)], "create the virtualenv")
        steps.update()
        steps.set_description(f"label-studio: pip install label-studio=={LABEL_STUDIO_VERSION}")
        run_install_step([str(python), "-m", "pip", "install", "-q", "--progress-bar", "off",
                          f"label-studio=={LABEL_STUDIO_VERSION}"], f"pip install label-studio=={LABEL_STUDIO_VERSION}")
        steps.update()
        steps.close()
        if not executable.exists():
            raise LabelStudioError(f"pip installed label-studio but {executable} is missing")
        stamp.touch()
    return executable


# --- what answers on a port ---------------------------------------------------------------------------------

def probe(url: str) -> str | None:
    """What answers at url: "label-studio", "other", or None when nothing listens."""
    try:
        # /api/version is Label Studio's version info as JSON, without login (/version is an HTML page);
        # /health only says {"status": "UP"}, as other servers might.
        with urllib.request.urlopen(f"{url}/api/version", timeout=5) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError:
        return "other"
    except urllib.error.URLError as error:
        return None if isinstance(error.reason, ConnectionRefusedError) else "other"
    except (OSError, ValueError):  # not HTTP, or not JSON
        return "other"
    return "label-studio" if isinstance(body, dict) and "label-studio-os-package" in body else "other"


def check_token(url: str, token: str) -> None:
    """Raise LabelStudioAuthError unless Label Studio at url accepts the (legacy) API token."""
    request = urllib.request.Request(f"{url}/api/projects?page_size=1", headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise LabelStudioAuthError(
                f"Label Studio at {url} rejected the API token (HTTP {error.code}). The token is set on the first "
                "start of a data dir only: use the one that data dir was created with (FIC_LABEL_STUDIO_TOKEN), "
                "or start with a fresh FIC_LABEL_STUDIO_DATA_DIR") from None
        raise LabelStudioError(f"Label Studio at {url} answered HTTP {error.code} on /api/projects") from None
    except (urllib.error.URLError, OSError) as error:
        raise LabelStudioError(f"Label Studio at {url} did not answer: {error}") from None


def busy_error(url: str) -> LabelStudioError:
    return LabelStudioError(f"port {url_port(url)} on {HOST} is busy with something that is not Label Studio "
                            f"({url}); choose another port (--port, or FIC_LABEL_STUDIO_URL)")


# --- the process -------------------------------------------------------------------------------------------

def pid_path(data_dir: Path) -> Path:
    return Path(data_dir) / PID_NAME


def log_path(data_dir: Path) -> Path:
    return Path(data_dir) / LOG_NAME


def log_text(path: Path, offset: int = 0) -> str:
    """The log from offset on: what this start wrote (the log is appended to across starts)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def log_tail(path: Path, offset: int = 0) -> str:
    return "\n".join(log_text(path, offset).splitlines()[-LOG_TAIL_LINES:]) or f"(nothing in {path})"


def running_server(data_dir: Path) -> tuple[int, int] | None:
    """(pid, port) of the live server recorded in data_dir's pid file; a stale pid file is removed."""
    process = processes.recorded(pid_path(data_dir))
    return (process.pid, url_port(process.url)) if process else None


def server_environment(data_dir: Path, username: str, password: str, token: str, document_root: Path,
                       venv_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
    env.update({
        "PATH": f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",  # the port-moved warning must reach the log while we watch it
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        # "Authorization: Token ..." works only when the organisation is created with legacy tokens enabled,
        # that is on the first start of a data dir; set it on every start so a first start never misses it.
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        # Label Studio's SSRF protection (its default banned subnets) stays on: the platform polls, Label Studio
        # calls nothing of the platform, and the browser, not the server, loads the images of the 127.0.0.1 shop.
        "SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
    })
    return env


def port_moved(path: Path, offset: int, port: int) -> bool:
    """Label Studio moves to port+1 without failing when port is taken; its log is the only sign."""
    return f"Port {port} is in use" in log_text(path, offset)


class Readiness:
    """The health probe of a start: Label Studio answers on url AND accepts the token. Raises at once when
    the log says the port moved; error() adds what was last missing and the tail of what this start logged."""

    def __init__(self, url: str, token: str, log: Path, offset: int) -> None:
        self.url, self.token, self.log, self.offset = url, token, log, offset
        self.waiting_for = "no answer yet"

    def __call__(self) -> bool:
        port = url_port(self.url)
        if port_moved(self.log, self.offset, port):
            raise LabelStudioError(f"port {port} was taken while Label Studio started, so it moved to another "
                                   f"port; choose a free one. Log {self.log}:\n{log_tail(self.log, self.offset)}")
        if probe(self.url) != "label-studio":
            return False
        try:
            check_token(self.url, self.token)
            return True
        except LabelStudioAuthError as error:  # the API may answer before the user and token exist
            self.waiting_for = str(error)
            return False

    def error(self, error: processes.StartError) -> LabelStudioError:
        return LabelStudioError(f"{error} (last check: {self.waiting_for}). The end of the log:\n"
                                f"{log_tail(self.log, self.offset)}")


def start(port: int, data_dir: Path, username: str, password: str, token: str, venv_dir: Path,
          timeout: float = START_TIMEOUT, document_root: Path | None = None) -> str:
    """Start Label Studio detached on 127.0.0.1:port unless it already runs there; return its URL.

    Idempotent: a Label Studio that answers on the port and accepts the token is used as it is.
    """
    url = local_url(port)
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    running = processes.recorded(pid_path(data_dir))
    if running and url_port(running.url) != port:
        raise LabelStudioError(f"the Label Studio of {data_dir} already runs on {running.url} "
                               f"(pid {running.pid}); stop it first (fic label-studio stop)")
    found = probe(url)
    if found == "label-studio":
        check_token(url, token)
        return url
    if found == "other":
        raise busy_error(url)
    path = log_path(data_dir)
    ready = Readiness(url, token, path, log_size(path))
    what = f"Label Studio on {url}"
    try:
        if running:  # started by another call and still migrating: wait for it instead of starting a second one
            processes.wait_until_healthy(running, ready, timeout, what)
            return url
        if not port_is_free(HOST, port):
            raise busy_error(url)
        executable = ensure_venv(venv_dir)
        command = [str(executable), "start", "--no-browser", "--internal-host", HOST, "--port", str(port),
                   "--host", url]
        env = server_environment(data_dir, username, password, token, Path(document_root or data_dir).absolute(),
                                 Path(venv_dir).absolute())
        # On any failure, Ctrl-C too, the half-started server is stopped and its pid file removed.
        processes.start(command, pid_path(data_dir), path, ready, what=what, timeout=timeout, url=url,
                        cwd=data_dir, env=env)
    except processes.StartError as error:
        raise ready.error(error) from None
    return url


def start_configured(config: ServerConfig, timeout: float = START_TIMEOUT) -> str:
    return start(config.port, config.data_dir, config.username, config.password, config.token, config.venv_dir,
                 timeout=timeout, document_root=config.document_root)


def stop(data_dir: Path) -> str:
    """Stop the server recorded in data_dir's pid file; a no-op (with a message) when none runs."""
    try:
        stopped = processes.stop(pid_path(data_dir), grace=STOP_TIMEOUT)
    except processes.ProcessError as error:
        raise LabelStudioError(f"Label Studio: {error}") from None
    if stopped is None:
        return f"no Label Studio running for {data_dir}"
    return f"stopped Label Studio (pid {stopped.pid}) on {stopped.url}"


def status(url: str, data_dir: Path, token: str) -> tuple[bool, str]:
    """(ready, message): ready when Label Studio answers on url and accepts the token."""
    running = running_server(data_dir)
    started_here = f"pid {running[0]}, data {data_dir}" if running else f"not started from {data_dir}"
    found = probe(url)
    if found == "label-studio":
        try:
            check_token(url, token)
        except LabelStudioError as error:
            return False, f"Label Studio answers on {url} ({started_here}) but: {error}"
        return True, f"Label Studio is up on {url} ({started_here}); the token is accepted"
    if found == "other":
        return False, f"something that is not Label Studio answers on {url}"
    if running and running[1] != url_port(url):
        return False, (f"nothing answers on {url}; the Label Studio of {data_dir} runs on {local_url(running[1])} "
                       f"(pid {running[0]})")
    if running:
        return False, f"Label Studio is starting (pid {running[0]}) but does not answer on {url} yet"
    return False, f"Label Studio is not running (nothing answers on {url})"


# --- the command -------------------------------------------------------------------------------------------

def from_environment(name: str) -> bool:
    return bool(os.environ.get(name)) and os.environ[name] != settings.DEFAULTS[name][0]


def login_lines(config: ServerConfig) -> list[str]:
    password = "(FIC_LABEL_STUDIO_PASSWORD)" if from_environment("FIC_LABEL_STUDIO_PASSWORD") else config.password
    token = ("FIC_LABEL_STUDIO_TOKEN" if from_environment("FIC_LABEL_STUDIO_TOKEN")
             else f"the demo default of FIC_LABEL_STUDIO_TOKEN ({config.token})")
    return [
        f"  login:     {config.username} / {password}",
        f"  API token: {token}",
        f"  data:      {config.data_dir} (log: {LOG_NAME})",
        "  stop:      .venv/bin/fic label-studio stop",
    ]


def run_start(config: ServerConfig, timeout: float) -> int:
    host = urlsplit(config.url).hostname
    if host not in (HOST, "localhost"):
        print(f"error: FIC_LABEL_STUDIO_URL is {config.url}, not a local server; `start` runs one on {HOST} only "
              "(use --port, or point FIC_LABEL_STUDIO_URL at http://127.0.0.1:PORT)", file=sys.stderr)
        return 2
    if not running_server(config.data_dir) and probe(config.url) is None:
        print(f"starting Label Studio on {local_url(config.port)} (the first start of a data dir takes ~20 s)",
              file=sys.stderr, flush=True)
    try:
        url = start_configured(config, timeout)
    except LabelStudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Label Studio is up: {url}")
    print("\n".join(login_lines(config)))
    if url != settings.get("FIC_LABEL_STUDIO_URL").rstrip("/"):
        print(f"  note:      the platform reads FIC_LABEL_STUDIO_URL; export FIC_LABEL_STUDIO_URL={url}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fic label-studio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=None, help="default: the port of FIC_LABEL_STUDIO_URL")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT, help="seconds to wait for a start")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = configured(args.port)
    if args.action == "start":
        return run_start(config, args.timeout)
    if args.action == "stop":
        try:
            print(stop(config.data_dir))
        except LabelStudioError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    ready, message = status(config.url, config.data_dir, config.token)
    print(message)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
