"""`fic train --data DIR --out DIR [--params FILE]`: cross-validate, train on every image, print the metrics.

DIR holds worn/* and not_worn/*. OUT becomes a model dir (model.pt, card.json) that `fic predict --model OUT`
uses, with folds.json, the cross-validated metrics.json and the plots beside it. The reported F1 is the
out-of-fold F1 with its spread over the folds: how well the recipe does on images it has not seen. On a terminal,
progress bars on stderr show the image features and the cross-validation folds.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from fic_assets.defs.model.data import make_folds, write_folds
from fic_assets.defs.model.evaluate import report_cv
from fic_assets.defs.model.params import load_params
from fic_assets.defs.model.train import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="image folder with worn/ and not_worn/")
    parser.add_argument("--out", required=True, type=Path, help="model dir to write")
    parser.add_argument("--params", type=Path, help="YAML with prepare/train sections (default: built-in defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    folds = make_folds(args.data, **params["prepare"])
    folds_file = write_folds(folds, args.out / "folds.json")
    print(f"{folds['counts']} usable images in {folds['folds']} folds; {len(folds['skipped'])} bad image(s) skipped", flush=True)
    with logging_redirect_tqdm():  # log lines above the progress bars, not through them
        card = train(folds_file, args.data, params["train"], args.out)
    metrics = report_cv(args.out, args.out)
    print(f"trained {card['version']} on {card['n_train']} images in {card['train_seconds']} s; "
          f"cross-validated F1 {metrics['f1']:.3f} ± {metrics['f1_std']:.3f}", flush=True)
    print(json.dumps(metrics, indent=2))
    return 0
