"""The `fic` command line: one entry point, a subcommand per tool."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, help). Each module has main(argv) -> int; imported lazily
# so `fic parse-page` does not pay for Dagster's import.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fic_assets.demo.run", "run the demo end to end through Dagster (demo shop crawl -> DuckDB); --photos DIR: on real photos; --stop: stop what it started"),
    "dashboard": ("fic_assets.dashboard.server", "the analysts' dashboard (Streamlit) over the analytics snapshot on 127.0.0.1:8501; --background / --stop"),
    "demo-shop": ("fic_assets.demo.shop.server", "serve the generated demo shop on 127.0.0.1; --photos DIR: real photos instead of drawings"),
    "label-studio": ("fic_assets.defs.labelling.server", "start/stop the local Label Studio server"),
    "parse-page": ("fic_crawler.parse_page", "parse saved product pages, print one JSON object each"),
    "train": ("fic_assets.defs.model.cli_train", "train the worn/not_worn model on an image folder, print test metrics"),
    "predict": ("fic_assets.defs.model.cli_predict", "classify image files or folders with a trained model (CSV)"),
    "release-dead-runs": ("fic_assets.defs.operations.dead_runs", "mark runs whose process was killed as failed and free their DuckDB pool slot"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="fic", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
