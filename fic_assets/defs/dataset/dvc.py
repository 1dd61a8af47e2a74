"""Version the image set with DVC: its CLI in a subprocess, its failures turned into messages that say what to fix.

The pointer file is DVC's own choice, `<dir>.dvc` beside the directory (DVC 3 has no other). It holds the
directory's `.dir` md5: commit it, and `dvc pull` in a fresh clone restores exactly that set from the remote.
Remote URL and endpoint go to the committed .dvc/config; keys go only to .dvc/config.local (git-ignored by DVC),
which this module writes itself, mode 0600, through a new file renamed into place: the secret is never on a
command line (`ps` shows those to every user), never in a file another user can read, and a symlink planted at
that path is replaced, not followed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from configobj import ConfigObj

from fic_assets.platform import settings

# What s3fs/botocore print, mapped to the cause a person can act on.
UNREACHABLE_MARKERS = ("Could not connect to the endpoint URL", "Connection refused", "Connect timeout",
                       "EndpointConnectionError", "Name or service not known")
CREDENTIAL_MARKERS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "(403)",
                      "Unable to locate credentials", "NoCredentialsError")
MISSING_BUCKET_MARKERS = ("NoSuchBucket", "Bucket does not exist")


SECRET_FILE_MODE = 0o600


class DvcError(RuntimeError):
    """A dvc command failed; the message says why in plain words, the command's own output follows."""


@dataclass(frozen=True)
class S3Remote:
    name: str
    url: str  # s3://bucket/prefix
    endpoint_url: str
    access_key_id: str
    secret_access_key: str

    @classmethod
    def from_settings(cls, name: str = "images") -> S3Remote:
        bucket, prefix = settings.get("FIC_S3_BUCKET"), settings.get("FIC_S3_PREFIX").strip("/")
        return cls(name, f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}", settings.get("FIC_S3_ENDPOINT"),
                   settings.get("FIC_S3_ACCESS_KEY"), settings.get("FIC_S3_SECRET_KEY"))


def dvc_file(path: str | Path) -> Path:
    """The pointer file DVC writes for a tracked directory: the directory's path plus `.dvc`."""
    path = Path(path)
    return path if path.suffix == ".dvc" else path.with_name(path.name + ".dvc")


def read_dir_hash(pointer: Path) -> str:
    """The `md5` of the pointer file's one output: `<32 hex>.dir` for a directory."""
    outs = yaml.safe_load(pointer.read_text(encoding="utf-8")).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DvcError(f"{pointer} does not hold exactly one output with an md5: {outs}")
    return str(outs[0]["md5"])


def tracked_dir_hash(path: str | Path) -> str | None:
    """The `<md5>.dir` DVC last recorded for the directory, or None when DVC does not track it (no pointer file)."""
    pointer = dvc_file(path)
    return read_dir_hash(pointer) if pointer.exists() else None


def explain_failure(action: str, output: str, endpoint_url: str | None) -> str:
    where = f"S3 remote at {endpoint_url}" if endpoint_url else "the DVC remote"
    last = output.strip().splitlines()[0] if output.strip() else "no output"
    if any(marker in output for marker in UNREACHABLE_MARKERS):
        return f"{where} is not reachable: {last} (is the S3 service, MinIO in the compose stack, running?)"
    if any(marker in output for marker in CREDENTIAL_MARKERS):
        return (f"{where} refused the credentials (wrong FIC_S3_ACCESS_KEY / FIC_S3_SECRET_KEY, or no access to "
                f"the bucket): {last}")
    if any(marker in output for marker in MISSING_BUCKET_MARKERS):
        return f"{where} has no such bucket (create it, or set FIC_S3_BUCKET): {last}"
    return f"dvc {action} failed: {output.strip() or 'no output'}"


class DvcProject:
    """A DVC project rooted at `root` (the directory holding .dvc/)."""

    def __init__(self, root: str | Path | None = None, timeout: float = 600):
        self.root = Path(root or settings.get("FIC_DVC_ROOT")).resolve()
        self.timeout = timeout

    def run(self, *args: str, action: str | None = None) -> str:
        """Run `dvc ARGS` in the project; its combined output, or DvcError explaining the failure."""
        env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
        try:
            done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=self.root, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=self.timeout)
        except subprocess.TimeoutExpired as error:
            raise DvcError(f"dvc {' '.join(args)} did not finish within {self.timeout:g} s") from error
        self.secure_local_config()  # whatever the command did (a `dvc remote modify --local` run by hand too)
        if done.returncode != 0:
            raise DvcError(explain_failure(action or args[0], done.stdout, self.endpoint_url()))
        return done.stdout

    @property
    def local_config(self) -> Path:
        return self.root / ".dvc" / "config.local"

    def secure_local_config(self) -> None:
        """.dvc/config.local holds the S3 secret: owner read/write only, whoever created it."""
        try:
            mode = self.local_config.lstat().st_mode
        except FileNotFoundError:
            return
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) != SECRET_FILE_MODE:
            os.chmod(self.local_config, SECRET_FILE_MODE)

    def write_local_keys(self, remote: str, keys: dict[str, str]) -> None:
        """Set keys of `remote` in .dvc/config.local, keeping what else it holds; the file ends up 0600."""
        path = self.local_config
        path.parent.mkdir(parents=True, exist_ok=True)
        # A symlink is not read (its target is not ours to disclose) and is replaced by a regular file.
        config = ConfigObj(str(path)) if path.is_file() and not path.is_symlink() else ConfigObj()
        config.filename = None
        config.setdefault(f'remote "{remote}"', {}).update(keys)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config.local.")  # created 0600
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), SECRET_FILE_MODE)
                out.write("\n".join(config.write()) + "\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def is_initialized(self) -> bool:
        return (self.root / ".dvc" / "config").exists()

    def ensure_init(self) -> None:
        """`dvc init` once; without git (a plain directory) as a no-SCM project. Idempotent."""
        if self.is_initialized():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self.run("init", "-q", *(() if (self.root / ".git").exists() else ("--no-scm",)))

    def configure_remote(self, name: str, url: str, endpoint_url: str, access_key_id: str,
                         secret_access_key: str) -> None:
        """Make `name` the default remote; URL and endpoint in .dvc/config, the keys in .dvc/config.local only
        (mode 0600, written here rather than by `dvc remote modify --local`, which would put them in argv)."""
        self.ensure_init()
        self.run("remote", "add", "--default", "--force", name, url)
        self.run("remote", "modify", name, "endpointurl", endpoint_url)
        self.write_local_keys(name, {"access_key_id": access_key_id, "secret_access_key": secret_access_key})

    def configure_s3_remote(self, remote: S3Remote) -> None:
        self.configure_remote(remote.name, remote.url, remote.endpoint_url, remote.access_key_id,
                              remote.secret_access_key)

    def add(self, path: str | Path) -> str:
        """Track the directory (cache its files, write `<path>.dvc`); returns its `<md5>.dir` hash."""
        path = Path(path)
        self.run("add", "-q", str(path))
        return read_dir_hash(dvc_file(self.root / path))

    def push(self, path: str | Path) -> str:
        """Upload what the pointer file names to the default remote; the local set and cache stay as they are."""
        return self.run("push", str(dvc_file(path)), action="push")

    def pull(self, path: str | Path) -> str:
        """Download and check out exactly the files the pointer file names."""
        return self.run("pull", str(dvc_file(path)), action="pull")

    def status(self, path: str | Path, cloud: bool = False) -> str:
        """`dvc status` of the pointer (against the remote with cloud=True); DVC's text, which says if in sync."""
        return self.run("status", *(("--cloud",) if cloud else ()), str(dvc_file(path)), action="status")

    def endpoint_url(self) -> str | None:
        """The default remote's endpointurl, read from DVC's config files (local overrides project) for messages."""
        merged: dict = {}
        for name in ("config", "config.local"):
            path = self.root / ".dvc" / name
            if path.exists():
                for section, values in ConfigObj(str(path)).items():
                    merged.setdefault(section, {}).update(values)
        remote = merged.get("core", {}).get("remote")
        return merged.get(f'remote "{remote}"', {}).get("endpointurl") if remote else None


class ImageSetStore(dg.ConfigurableResource):
    """The DVC-versioned image set and its S3 remote (MinIO in the compose stack, moto_server in tests).

    Keys travel through EnvVar into DVC's config.local only, never into the committed .dvc/config.
    """

    dvc_root: str
    image_set_dir: str
    endpoint_url: str
    bucket: str
    prefix: str = "dvc"
    access_key_id: str
    secret_access_key: str

    def image_dir(self) -> Path:
        return Path(self.image_set_dir)

    def remote_url(self) -> str:
        prefix = self.prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def project(self) -> DvcProject:
        project = DvcProject(Path(self.dvc_root))
        project.ensure_init()
        project.configure_s3_remote(S3Remote("images", self.remote_url(), self.endpoint_url, self.access_key_id, self.secret_access_key))
        return project
