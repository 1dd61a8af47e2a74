""".dvc/config.local holds the S3 secret: 0600 whoever made it, never on a command line (issue 12, case 6).

Real DVC (`python -m dvc`) in a temp no-SCM project; DVC itself must read the keys back from the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fic_assets.defs.dataset.dvc import DvcProject

SECRET = "s3cr3t/with+odd,chars'\"#;"
KEY_ID = "AKIAFICTEST"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def project(tmp_path) -> DvcProject:
    project = DvcProject(tmp_path / "project")
    project.ensure_init()
    return project


def configure(project: DvcProject, secret: str = SECRET) -> None:
    project.configure_remote("images", "s3://fic-test/images", "http://127.0.0.1:9000", KEY_ID, secret)


def dvc_reads_the_keys(project: DvcProject, secret: str = SECRET) -> bool:
    listed = project.run("config", "--list", "--local")
    return f"remote.images.secret_access_key={secret}" in listed and f"remote.images.access_key_id={KEY_ID}" in listed


def test_the_secret_file_is_created_0600_even_under_a_umask_of_0(project):
    """Hostile setting: umask 000 (every file world-writable by default) when the remote is configured."""
    previous = os.umask(0)
    try:
        configure(project)
    finally:
        os.umask(previous)
    assert mode(project.local_config) == 0o600
    assert dvc_reads_the_keys(project)
    assert SECRET not in (project.root / ".dvc" / "config").read_text()  # the committed config has no key


def test_a_world_readable_secret_file_is_fixed_to_0600_and_keeps_its_other_settings(project):
    """Bad input: an existing .dvc/config.local, mode 0644 (as `dvc remote modify --local` leaves it), holding
    an old key and a setting of its own."""
    project.local_config.write_text("['remote \"images\"']\nsecret_access_key = old\n[core]\nautostage = true\n")
    project.local_config.chmod(0o644)
    configure(project)
    assert mode(project.local_config) == 0o600
    assert dvc_reads_the_keys(project) and "old" not in project.local_config.read_text()
    assert "core.autostage=true" in project.run("config", "--list", "--local")

    # Made loose again by hand: the next dvc command the platform runs tightens it.
    project.local_config.chmod(0o666)
    project.run("config", "--list", "--local")
    assert mode(project.local_config) == 0o600


def test_a_symlink_planted_at_the_secret_path_is_replaced_not_followed(project, tmp_path):
    """Hostile action: another user plants .dvc/config.local as a symlink to a file they can read."""
    trap = tmp_path / "world-readable.txt"
    trap.write_text("")
    trap.chmod(0o644)
    project.local_config.symlink_to(trap)
    configure(project)
    assert trap.read_text() == "" and mode(trap) == 0o644  # nothing written through the link
    assert not project.local_config.is_symlink() and mode(project.local_config) == 0o600
    assert dvc_reads_the_keys(project)


def test_the_secret_never_appears_on_a_dvc_command_line(project, monkeypatch):
    """Hostile action: another user watching `ps` (argv of every process is world-readable in /proc) while the
    remote is configured."""
    seen: list[tuple[str, ...]] = []
    run = DvcProject.run

    def recording(self, *args, **kwargs):
        seen.append(args)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(DvcProject, "run", recording)
    configure(project)
    assert seen and not any(SECRET in arg or KEY_ID in arg for args in seen for arg in args)
    assert dvc_reads_the_keys(project)
