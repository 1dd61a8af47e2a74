"""fic_assets/platform/processes.py with real processes: a real HTTP server, children that exit, hang, spawn
grandchildren or ignore SIGTERM, and a real other program holding a recorded pid."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from fic_assets.platform import processes
from fic_assets_tests.conftest import free_port

PYTHON = sys.executable
SLEEPER = [PYTHON, "-c", "import time; time.sleep(600)"]
# A child that starts two grandchildren in its process group, prints their pids, then waits; with "ignore" all
# three ignore SIGTERM (SIG_IGN survives exec), so only SIGKILL ends them.
SPAWNER = """
import signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchildren = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
print("grandchildren", *(g.pid for g in grandchildren), flush=True)
time.sleep(600)
"""


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def gone(pid: int) -> bool:
    """Nothing of pid runs: no such process, or a zombie whose every thread has ended."""
    try:
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1
    except psutil.NoSuchProcess:
        return True


class Spawner:
    """Starts SPAWNER through processes.start; its health probe reads the grandchildren's pids from the log."""

    def __init__(self, tmp_path: Path) -> None:
        self.pid_file, self.log = tmp_path / "spawner.pid", tmp_path / "spawner.log"
        self.grandchildren: list[int] = []

    def has_grandchildren(self) -> bool:
        for line in self.log.read_text().splitlines():
            if line.startswith("grandchildren "):
                self.grandchildren = [int(pid) for pid in line.split()[1:]]
        return bool(self.grandchildren)

    def start(self, on_sigterm: str, healthy=None, timeout: float = 20) -> processes.Recorded:
        return processes.start([PYTHON, "-c", SPAWNER, on_sigterm], self.pid_file, self.log,
                               healthy or self.has_grandchildren, what="the spawner", timeout=timeout)


def test_a_healthy_server_is_started_detached_recorded_found_by_another_process_and_stopped(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pid_file, log = tmp_path / "web.pid", tmp_path / "web.log"
    process = processes.start([PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port)], pid_file, log,
                              lambda: answers(url), what=f"http.server on {url}", timeout=30, url=url)
    try:
        assert answers(url)
        assert os.getpgid(process.pid) == process.pid and os.getsid(process.pid) == process.pid  # its own session
        assert os.readlink(f"/proc/{process.pid}/fd/0") == "/dev/null"
        assert processes.recorded(pid_file) == process and process.url == url and process.log == log
        # Another program (not its parent) reads the record and recognises the process.
        seen = subprocess.run([PYTHON, "-c", "import sys; from fic_assets.platform import processes; "
                               "print(processes.recorded(sys.argv[1]).pid)", str(pid_file)],
                              capture_output=True, text=True, timeout=60)
        assert seen.stdout.strip() == str(process.pid), seen.stderr
    finally:
        stopped = processes.stop(pid_file)
    assert stopped == process
    assert not pid_file.exists() and not answers(url) and gone(process.pid)
    assert "GET / HTTP" in log.read_text()  # its stderr went to the log


def test_a_child_that_exits_at_once_fails_with_its_exit_code_and_log(tmp_path):
    """Bad input: a command that prints an error and exits with code 3 before it is healthy."""
    pid_file, log = tmp_path / "broken.pid", tmp_path / "broken.log"
    with pytest.raises(processes.StartError) as error:
        processes.start([PYTHON, "-c", "import sys; print('no such config'); sys.exit(3)"], pid_file, log,
                        lambda: False, what="the broken server", timeout=30)
    assert str(error.value) == f"the broken server exited with code 3 before it was ready; see {log}"
    assert error.value.log == log and "no such config" in log.read_text()
    assert not pid_file.exists()


def test_a_child_never_healthy_fails_after_the_timeout_and_its_whole_group_is_stopped(tmp_path):
    """Bad input: a child (with two grandchildren) that runs but whose health never comes."""
    spawner = Spawner(tmp_path)
    started = time.monotonic()
    with pytest.raises(processes.StartError) as error:
        spawner.start("obey", healthy=lambda: spawner.has_grandchildren() and False, timeout=2)
    assert str(error.value) == f"the spawner was not ready within 2 s; see {spawner.log}"
    assert time.monotonic() - started < 15
    assert len(spawner.grandchildren) == 2 and all(gone(pid) for pid in spawner.grandchildren)
    assert not spawner.pid_file.exists()


def test_an_error_raised_by_the_health_probe_stops_the_group_and_is_raised(tmp_path):
    """Bad input: the health probe gives up at once (as Label Studio's does when its log says the port moved)."""
    spawner = Spawner(tmp_path)

    def healthy() -> bool:
        if spawner.has_grandchildren():
            raise ValueError("the log says it went wrong")
        return False

    with pytest.raises(ValueError, match="the log says it went wrong"):
        spawner.start("obey", healthy=healthy)
    assert all(gone(pid) for pid in spawner.grandchildren) and not spawner.pid_file.exists()


@pytest.mark.parametrize("on_sigterm", ["obey", "ignore"])
def test_stop_ends_the_child_and_the_grandchildren_in_its_group(tmp_path, on_sigterm):
    """Bad input (ignore): a child and grandchildren that ignore SIGTERM: SIGKILL after the grace period."""
    spawner = Spawner(tmp_path)
    process = spawner.start(on_sigterm)
    assert len(spawner.grandchildren) == 2
    assert all(os.getpgid(pid) == process.pid for pid in spawner.grandchildren)
    started = time.monotonic()
    assert processes.stop(spawner.pid_file, grace=1) == process
    assert time.monotonic() - started < 1 + processes.KILL_WAIT
    assert gone(process.pid) and all(gone(pid) for pid in spawner.grandchildren)
    assert not spawner.pid_file.exists()


@pytest.mark.parametrize("other_program", [["sleep", "600"], SLEEPER], ids=["another-name", "same-name-later"])
def test_a_stale_record_whose_pid_is_now_another_program_does_not_signal_it(tmp_path, other_program):
    """Bad input: the record of a process that has ended, whose pid the kernel now gives to another program
    (another name, or the same name started later)."""
    pid_file = tmp_path / "old.pid"
    process = processes.start(SLEEPER, pid_file, tmp_path / "old.log", lambda: True, what="the sleeper", timeout=30)
    processes.stop_group(process.pid)  # it ended behind the record's back: the record stays
    assert pid_file.exists()
    time.sleep(0.05)
    other = subprocess.Popen(other_program, start_new_session=True)
    try:
        processes.save(dataclasses.replace(process, pid=other.pid))  # the old record, naming the reused pid
        assert processes.recorded(pid_file) is None
        assert not pid_file.exists()
        processes.save(dataclasses.replace(process, pid=other.pid))
        assert processes.stop(pid_file) is None
        time.sleep(0.2)
        assert other.poll() is None  # not signalled
    finally:
        other.kill()
        other.wait()


def test_stop_without_a_record_or_with_an_unreadable_one_signals_nothing(tmp_path):
    """Bad input: no pid file, then a pid file in another format ("PID PORT", as an older fic wrote) naming a
    live process."""
    pid_file = tmp_path / "none.pid"
    assert processes.stop(pid_file) is None and processes.recorded(pid_file) is None
    other = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        pid_file.write_text(f"{other.pid} 8080\n")
        assert processes.stop(pid_file) is None
        assert not pid_file.exists()
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
