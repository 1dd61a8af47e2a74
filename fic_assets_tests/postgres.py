"""A throwaway PostgreSQL cluster for the tests (not a test module): Debian's own server binaries, a temp
data dir, a free loopback port, one password-protected role and database, stopped and removed afterwards.

initdb and postgres refuse to run as root: as root the cluster belongs to the `postgres` user (its commands run
through `runuser -u postgres --`, or `su postgres` where runuser is missing); as anyone else, to that user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib.util
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fic_assets.platform.net import free_port
from fic_assets_tests.conftest import require

SERVER_USER = "postgres"  # the Debian package's system user; owns the cluster when we run as root


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    db_name: str
    username: str
    password: str
    root: Path  # temp dir: data/, the socket and postgres.log

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dagster_env(self) -> dict[str, str]:
        """The DAGSTER_PG_* variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.db_name,
            "DAGSTER_PG_USER": self.username,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def connect(self):
        """A psycopg2 connection over TCP with the role's password (what Dagster does), autocommit."""
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, dbname=self.db_name, user=self.username,
                               password=self.password, connect_timeout=10)
        con.autocommit = True
        return con


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and postgres (FIC_PG_BIN overrides)."""
    candidates = [os.environ["FIC_PG_BIN"]] if os.environ.get("FIC_PG_BIN") else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                         reverse=True)
    for candidate in candidates:
        if all(os.access(Path(candidate) / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--", *argv]
    return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(argv)]


def _run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    # LC_ALL=C: initdb and the server must not depend on the locales this machine happens to have.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    return subprocess.run(_as_server_user(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _check(result: subprocess.CompletedProcess, what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}")


@contextlib.contextmanager
def running_postgres(db_name: str = "dagster", username: str = "dagster") -> Iterator[PostgresServer]:
    """Start a fresh cluster, create the role (with a random password) and its database, yield, stop, delete."""
    bin_dir = find_bin_dir()
    require(bin_dir is not None, "PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    require(importlib.util.find_spec("psycopg2") is not None, "psycopg2 (pip install dagster-postgres)")
    if os.geteuid() == 0:
        import pwd

        try:
            server_user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            require(False, f"the `{SERVER_USER}` system user (created by Debian's postgresql package)")

    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and the postgres user could not reach into it.
    root = Path(tempfile.mkdtemp(prefix="fic-postgres-", dir="/tmp"))
    if os.geteuid() == 0:
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    data, log = root / "data", root / "postgres.log"
    started = False
    try:
        # Superuser `postgres` trusted over the socket only (for the setup below); TCP needs a password.
        _check(_run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C",
                     "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], cwd=root), "initdb")
        for _attempt in range(3):  # a free port can be taken between free_port() and the server's bind
            port = free_port()
            options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
            result = _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "120",
                           "start"], cwd=root, timeout=180)
            if result.returncode == 0:
                started = True
                break
        _check(result, "pg_ctl start", log)

        import psycopg2

        password = secrets.token_hex(16)
        admin = psycopg2.connect(host=str(root), port=port, dbname="postgres", user="postgres", connect_timeout=10)
        admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE ROLE "{username}" LOGIN PASSWORD %s', (password,))
                cur.execute(f'CREATE DATABASE "{db_name}" OWNER "{username}"')
        finally:
            admin.close()
        yield PostgresServer("127.0.0.1", port, db_name, username, password, root)
    finally:
        if started:
            stop = _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"], cwd=root)
            if stop.returncode != 0:
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=root)
        shutil.rmtree(root, ignore_errors=True)
