"""`fic predict --model DIR PATH...`: CSV on stdout, `path,label,score,error`; score = P(worn).

A bad image gets label `error`, an empty score and the reason in `error`; the others are still predicted
and the exit status is 0. A missing model dir exits 2 and says how to train one. The time to load the model
(and export it once per version), the scoring rate and, on a terminal, a progress bar go to stderr, so the CSV on
stdout stays clean.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fic_assets.defs.model.artifact import ModelNotFoundError
from fic_assets.defs.model.data import IMAGE_SUFFIXES
from fic_assets.defs.model.scoring import Scorer, score_stream
from fic_assets.platform import progress

# A cell starting with one of these is a formula to a spreadsheet (=HYPERLINK(...) runs when opened).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files under them (sorted; every format Pillow opens)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def safe_cell(text: str) -> str:
    """A file name as CSV text a spreadsheet shows and never evaluates (OWASP CSV injection advice)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic predict", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="model dir written by `fic train`")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        scorer = Scorer.load(args.model)
    except ModelNotFoundError as error:
        print(f"fic predict: {error}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    paths = expand_paths(args.paths)
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "label", "score", "error"])
    rows = score_stream(paths, scorer, batch_size=args.batch_size)
    for row in progress.bar(rows, total=len(paths), desc="fic predict", unit="image", leave=False):
        writer.writerow([safe_cell(row.source), row.label, "" if row.score is None else f"{row.score:.4f}",
                         safe_cell(row.error or "")])
    done = time.perf_counter()
    rate = len(paths) / (done - loaded) if done > loaded else 0.0
    print(f"fic predict: model {scorer.version} loaded in {loaded - started:.1f} s; {len(paths)} image(s) scored "
          f"in {done - loaded:.1f} s ({rate:.0f} images/s)", file=sys.stderr)
    return 0
