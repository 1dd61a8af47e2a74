"""One way to run a local side process (the demo shop, Label Studio, the local S3): start, record, find, stop.

    process = start(command, pid_file, log, healthy, what="the demo shop on URL", timeout=15)
    recorded(pid_file)     # the live process a pid file names, or None (a stale record is removed)
    stop(pid_file)         # stop its whole process group; None when nothing runs

A process runs detached: its own session (Ctrl-C in the starting terminal does not reach it, and its whole
process group can be stopped), stdin from /dev/null, stdout and stderr appended to its log. Its record (a JSON
pid file) names the pid together with the program's name and its start time since boot, so a pid that the
kernel has since given to another program is recognised as stale and never signalled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from fic_assets.platform import settings

POLL_SECONDS = 0.1
STOP_GRACE = 10.0  # SIGTERM -> SIGKILL
KILL_WAIT = 5.0  # SIGKILL -> "still runs"
# Start times are in clock ticks (0.01 s on Linux); another process on the same pid started at another tick.
SAME_START = 0.015

# Processes started by this one, so they are reaped (no zombie, no ResourceWarning) and their exit code known.
_children: dict[int, subprocess.Popen] = {}


class ProcessError(RuntimeError):
    """A side process could not be started or stopped."""


class StartError(ProcessError):
    """The process exited before it was healthy, or was not healthy in time; the message names its log."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Recorded:
    """A started process as its pid file records it."""

    pid: int  # also its process group id: it leads its own session
    name: str  # the program's name (psutil's name(): the kernel's comm)
    started: float  # seconds after boot it started at, to tell it from a later process on the same pid
    command: tuple[str, ...]
    log: Path
    url: str | None  # where it answers, when it is a server
    pid_file: Path


def data_dir() -> Path:
    """FIC_DATA_DIR, created: where the platform's side processes keep their pid files and logs."""
    path = Path(settings.get("FIC_DATA_DIR"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def started_since_boot(process: psutil.Process) -> float:
    # create_time() is boot time + start ticks, and the boot time moves with the wall clock: subtract it.
    return process.create_time() - psutil.boot_time()


def save(process: Recorded) -> None:
    """Write the pid file atomically, so that a concurrent reader never sees half a record."""
    fields = dataclasses.asdict(process)
    del fields["pid_file"]
    fields["log"] = str(process.log)
    partial = process.pid_file.with_name(f".{process.pid_file.name}.{os.getpid()}")
    partial.write_text(json.dumps(fields) + "\n")
    os.replace(partial, process.pid_file)


def load(pid_file: Path) -> Recorded | None:
    """The record in pid_file as it is (its process may be gone); None when missing or unreadable."""
    try:
        fields = json.loads(Path(pid_file).read_text())
        return Recorded(pid=int(fields["pid"]), name=str(fields["name"]), started=float(fields["started"]),
                        command=tuple(fields["command"]), log=Path(fields["log"]), url=fields.get("url"),
                        pid_file=Path(pid_file))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, AttributeError):  # not our format: it cannot say which process it was
        return None


def forget(process: Recorded) -> None:
    """Remove the pid file, unless it now records another process (a later start)."""
    current = load(process.pid_file)
    if current is None or current.pid == process.pid:
        process.pid_file.unlink(missing_ok=True)


def runs(process: psutil.Process) -> bool:
    """The process has a thread that still runs. A zombie main thread alone misleads: while a big process
    exits, its other threads may still run and hold its sockets (the port is not free yet)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE or process.num_threads() > 1
    except psutil.NoSuchProcess:
        return False


def is_running(process: Recorded) -> bool:
    """The recorded process runs: the same program, started at the same time, not exited."""
    child = _children.get(process.pid)
    if child is not None:  # our own child: poll() also reaps it
        return child.poll() is None
    try:
        found = psutil.Process(process.pid)
        same = found.name()[:15] == process.name[:15] and abs(started_since_boot(found) - process.started) < SAME_START
    except psutil.NoSuchProcess:
        return False
    return same and runs(found)


def recorded(pid_file: Path) -> Recorded | None:
    """The running process pid_file records; a stale record (gone, or its pid now another program's) or an
    unreadable one is removed and None returned."""
    process = load(pid_file)
    if process is None:
        Path(pid_file).unlink(missing_ok=True)
        return None
    if not is_running(process):
        _children.pop(process.pid, None)
        forget(process)
        return None
    return process


def exit_code(pid: int) -> int | None:
    child = _children.get(pid)
    return child.returncode if child is not None else None


def wait_until_healthy(process: Recorded, healthy: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once healthy() says so; StartError if the process exits first or timeout passes. healthy() may
    raise to give up at once (say, on a sign in the log that the start went wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        if not is_running(process):
            code = exit_code(process.pid)
            how = f"exited with code {code}" if code is not None else "exited"
            raise StartError(f"{what} {how} before it was ready; see {process.log}", process.log)
        if healthy():
            return
        if time.monotonic() > deadline:
            raise StartError(f"{what} was not ready within {timeout:.0f} s; see {process.log}", process.log)
        time.sleep(POLL_SECONDS)


def start(command: Sequence[str], pid_file: Path, log: Path, healthy: Callable[[], bool], *, what: str,
          timeout: float, url: str | None = None, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> Recorded:
    """Start command detached, record it in pid_file and wait until healthy(); return its record.

    The record is written before the wait, so a concurrent caller sees a start in progress. On any failure
    (StartError, an error of healthy(), Ctrl-C) the whole process group is stopped and the record removed.
    """
    pid_file, log = Path(pid_file), Path(log)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    _children[child.pid] = child
    process = None
    try:
        # Popen returns once the command is exec'ed: the name is the program's, not ours.
        found = psutil.Process(child.pid)
        process = Recorded(pid=child.pid, name=found.name(), started=started_since_boot(found),
                           command=tuple(command), log=log, url=url, pid_file=pid_file)
        save(process)
        wait_until_healthy(process, healthy, timeout, what)
    except BaseException:
        stop_group(child)
        if process is not None:
            forget(process)
        raise
    return process


def group_runs(pgid: int) -> bool:
    """Some process of the group still runs (zombies whose threads have all ended do not count)."""
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and runs(process):
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def reap(pid: int, child: subprocess.Popen | None) -> None:
    if child is not None:
        child.poll()
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: whoever is its parent reaps it
        pass


def stop_group(target: int | subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group led by target (a pid or our Popen), SIGKILL what is left after grace seconds;
    return once none of it runs, reaping the leader when it is our child."""
    child = target if isinstance(target, subprocess.Popen) else _children.get(target)
    pgid = target.pid if isinstance(target, subprocess.Popen) else target
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while True:
            reap(pgid, child)
            if not group_runs(pgid) or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS / 2)
        if not group_runs(pgid):
            break
    else:
        raise ProcessError(f"process group {pgid} still runs after SIGKILL")
    reap(pgid, child)
    _children.pop(pgid, None)


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on this TCP port, recorded or not (None: nothing, or not ours to see)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    return next((c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                 and c.pid), None)


def stop(pid_file: Path, grace: float = STOP_GRACE) -> Recorded | None:
    """Stop the process group pid_file records and remove the record; None (nothing signalled) when no
    recorded process runs."""
    process = recorded(pid_file)
    if process is None:
        return None
    stop_group(process.pid, grace)
    forget(process)
    return process
