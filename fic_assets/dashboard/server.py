"""`fic dashboard`: the analysts' Streamlit dashboard (app.py) over the analytics snapshot, on 127.0.0.1 by default.

    fic dashboard [--host 127.0.0.1] [--port 8501] [--snapshot DIR]    # foreground, Ctrl-C to stop
    fic dashboard --background                                          # detached (platform/processes.py); prints the URL
    fic dashboard --stop [--port 8501]                                  # stops the background one

--snapshot DIR (default FIC_ANALYTICS_DIR, i.e. $FIC_DATA_DIR/analytics) is the analytics folder the
`analytics_snapshot` asset writes, or one snapshots/<version> directory. The dashboard starts without a snapshot
too and says how to make one.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from fic_assets.dashboard import views
from fic_assets.platform import processes, settings
from fic_assets.platform.net import port_is_free

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
APP = Path(__file__).with_name("app.py")
REPO = Path(__file__).resolve().parents[2]


def url_of(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def pid_file(port: int) -> Path:
    return processes.data_dir() / f"dashboard-{port}.pid"


def background_pid_files() -> list[Path]:
    return sorted(processes.data_dir().glob("dashboard-*.pid"))


def healthy(url: str) -> bool:
    """Streamlit's own health endpoint answers `ok`."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            return answer.status == 200 and answer.read().strip() == b"ok"
    except (OSError, urllib.error.URLError, ValueError):
        return False


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--global.developmentMode", "false", "--client.toolbarMode", "viewer",
        # The app shows its own messages; an unexpected error shows its type and message only, no traceback.
        "--client.showErrorDetails", "type",
    ]


def environment(snapshot: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # Absolute: the app runs from the repository, and a relative FIC_DATA_DIR means the caller's directory.
    env["FIC_ANALYTICS_DIR"] = str(Path(snapshot or settings.get("FIC_ANALYTICS_DIR")).resolve())
    # The app imports fic_assets: from this checkout, whether or not it is installed in the venv.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def start_background(host: str, port: int, snapshot: str | None = None) -> str:
    """Start a detached dashboard on host:port unless ours already runs there; return its URL.
    processes.ProcessError (or StartError) with the reason when it cannot."""
    url = url_of(host, port)
    running = processes.recorded(pid_file(port))
    if running is not None:
        return running.url or url
    if not port_is_free(host, port):
        raise processes.ProcessError(f"port {port} on {host} is busy with something that is not a dashboard fic "
                                     "started; choose another with --port")
    processes.start(streamlit_command(host, port), pid_file(port), processes.data_dir() / f"dashboard-{port}.log",
                    lambda: healthy(url), what=f"the dashboard on {url}", timeout=START_TIMEOUT, url=url,
                    cwd=REPO, env=environment(snapshot))
    return url


def stop_background(port: int) -> processes.Recorded | None:
    return processes.stop(pid_file(port))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fic dashboard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default {HOST}; 0.0.0.0 in a container)")
    port = int(settings.get("FIC_DASHBOARD_PORT"))
    parser.add_argument("--port", type=int, default=port, help=f"port (default FIC_DASHBOARD_PORT: {port})")
    parser.add_argument("--snapshot", metavar="DIR", help="the analytics folder (default FIC_ANALYTICS_DIR) or one "
                        "snapshots/<version> directory")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--background", action="store_true", help="start detached, print the URL; no-op when running")
    action.add_argument("--stop", action="store_true", help="stop the background dashboard on --port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stop:
        stopped = stop_background(args.port)
        print(f"stopped the dashboard on {stopped.url}" if stopped else
              f"no background dashboard running for port {args.port} (none recorded in {pid_file(args.port)})")
        return 0
    if args.snapshot and not Path(args.snapshot).is_dir():
        print(f"error: --snapshot {args.snapshot}: no such directory (the analytics folder `analytics_snapshot` "
              "writes, default $FIC_DATA_DIR/analytics)", file=sys.stderr)
        return 2
    try:
        views.public_url_prefixes()  # a malformed FIC_DASHBOARD_PUBLIC_URLS stops the start, not a page later
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.background:
        try:
            print(start_background(args.host, args.port, args.snapshot))
        except processes.ProcessError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if not port_is_free(args.host, args.port):
        print(f"error: port {args.port} on {args.host} is busy; choose another with --port", file=sys.stderr)
        return 1
    print(f"dashboard on {url_of(args.host, args.port)} - Ctrl-C to stop", flush=True)
    env = environment(args.snapshot)
    os.execve(sys.executable, streamlit_command(args.host, args.port), env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
