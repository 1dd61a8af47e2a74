"""Progress bars of `fic train` and `fic predict`, for real: the commands as subprocesses, once with stderr on a
pseudo-terminal (a person's shell) and once on pipes (a script, CI). Bars go to stderr and only to a terminal;
the CSV on stdout is the same byte for byte either way."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import tempfile
import termios
import pytest
import yaml

from fic_assets.demo.sample import write_demo_image_set

FAST_PARAMS = {"prepare": {"folds": 4, "seed": 1}, "train": {"input_size": 128, "cv_repeats": 1}}
# What a tqdm bar draws: "desc:  40%|████      | 24/60 [...]".
BAR = re.compile(r"\d+%\|")


def fic(*args: str) -> list[str]:
    return [sys.executable, "-m", "fic_assets.cli", *args]


def on_terminal(command: list[str], timeout: float = 300) -> tuple[int, str, str]:
    """Run command with stderr on a pseudo-terminal (120 columns, as a person's shell has a size) and stdout on a
    file: (exit status, stdout, terminal output)."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=terminal)
        os.close(terminal)
        seen = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            seen.append(chunk)
        process.wait(timeout=timeout)
        os.close(master)
        out.seek(0)
        return process.returncode, out.read().decode("utf-8"), b"".join(seen).decode("utf-8", errors="replace")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict:
    """`fic train` on 40 demo images with stderr on a terminal."""
    root = tmp_path_factory.mktemp("progress")
    images = root / "images"
    write_demo_image_set(images, 40, seed=3, width=200)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(FAST_PARAMS))
    status, stdout, terminal = on_terminal(fic("train", "--data", str(images), "--out", str(root / "model"), "--params", str(params)))
    assert status == 0, terminal[-3000:]
    return {"images": images, "out": root / "model", "stdout": stdout, "terminal": terminal}


def test_fic_train_on_a_terminal_shows_feature_and_fold_progress_on_stderr(model):
    # The bars are cleared once done (leave=False): the terminal saw them drawn while they ran.
    assert re.search(r"image features: +\d+%\|[^|]*\| \d+/40 \[", model["terminal"]), model["terminal"][-2000:]
    assert re.search(r"cross-validation: +\d+%\|[^|]*\| \d/4 \[", model["terminal"]), model["terminal"][-2000:]
    assert not BAR.search(model["stdout"]) and "\r" not in model["stdout"]
    assert "cross-validated F1" in model["stdout"]


def test_fic_predict_csv_is_the_same_with_a_progress_bar_on_a_terminal_and_nothing_extra_without(model):
    paths = sorted(str(path) for path in model["images"].rglob("*.jpg"))
    command = fic("predict", "--model", str(model["out"]), *paths)

    completed = subprocess.run(command, capture_output=True, timeout=300)  # bytes: csv's \r\n line ends kept
    piped = subprocess.CompletedProcess(command, completed.returncode, completed.stdout.decode("utf-8"), completed.stderr.decode("utf-8"))
    assert piped.returncode == 0, piped.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(piped.stdout)))
    assert [row["path"] for row in rows] == paths and all(row["label"] in ("worn", "not_worn") for row in rows)
    # Without a terminal: no bar, only the one summary line on stderr.
    assert [line for line in piped.stderr.splitlines() if line.strip()] == [piped.stderr.strip()], piped.stderr
    assert piped.stderr.startswith("fic predict: model") and "\r" not in piped.stderr and not BAR.search(piped.stderr)

    status, stdout, terminal = on_terminal(command)
    assert status == 0, terminal[-3000:]
    assert stdout == piped.stdout  # the CSV, byte for byte: the bar never reaches stdout
    assert re.search(rf"fic predict: +\d+%\|[^|]*\| \d+/{len(paths)} \[", terminal), terminal[-2000:]
    assert "images/s" in terminal  # the summary line follows the bar
