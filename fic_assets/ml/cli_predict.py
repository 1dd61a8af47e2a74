"""`fic predict --model DIR PATH...`: CSV on stdout, `path,label,score,error`; score = P(worn).

A bad image gets label `error`, an empty score and the reason in `error`; the others are still predicted
and the exit status is 0. A missing model dir exits 2 and says how to train one.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from fic_assets.ml.predict import ModelNotFoundError, Predictor, expand_paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic predict", description=__doc__)
    parser.add_argument("--model", required=True, type=Path, help="model dir written by `fic train`")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.load(args.model)
    except ModelNotFoundError as error:
        print(f"fic predict: {error}", file=sys.stderr)
        return 2
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "label", "score", "error"])
    for row in predictor.predict_paths(expand_paths(args.paths), batch_size=args.batch_size):
        writer.writerow([row.path, row.label, "" if row.score is None else f"{row.score:.4f}", row.error or ""])
    return 0
