"""`fic train --data DIR --out DIR [--params FILE]`: split, train, evaluate; prints the test metrics.

DIR holds worn/*.jpg and not_worn/*.jpg. OUT becomes a model dir (model.pt, card.json) that `fic predict
--model OUT` uses, with split.json, metrics.json and the plots beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from fic_assets.ml.data import make_split, write_split
from fic_assets.ml.evaluate import evaluate
from fic_assets.ml.params import load_params
from fic_assets.ml.train import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="image folder with worn/ and not_worn/")
    parser.add_argument("--out", required=True, type=Path, help="model dir to write")
    parser.add_argument("--params", type=Path, help="YAML with prepare/train sections (default: built-in defaults)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(args.params)
    split = make_split(args.data, **params["prepare"])
    split_file = write_split(split, args.out / "split.json")
    print(f"split: {json.dumps(split['counts'])}; {len(split['skipped'])} bad image(s) skipped", flush=True)
    card = train(split_file, args.data, params["train"], args.out)
    print(f"trained {card['version']} in {card['train_seconds']} s (best epoch {card['best_epoch']})", flush=True)
    metrics = evaluate(args.out, split_file, args.data, args.out)
    print(json.dumps(metrics, indent=2))
    return 0
