"""`fic parse-page FILE... [--url URL]`: parse saved product pages, print one JSON object per page.

Each object is the item the crawler would yield; its `parsed_by` says which path read it: `json-ld` (the JSON-LD
alone, no DOM built), `json-ld+html` (JSON-LD completed from the markup) or `html` (the markup alone). What the
parser met on the way (fallbacks, disagreements between JSON-LD and markup) goes to stderr, one line per page.

Exit status: 0 when every page held a product, 2 when a page held none (named on stderr; the other pages
are still printed), 1 when a file could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from w3lib.encoding import html_to_unicode

from fic_crawler.parsing import NoProductError, canonical_url, parse_product

EXIT_NO_PRODUCT = 2
EXIT_UNREADABLE = 1


def read_page(path: Path) -> str:
    """Decode as a browser would: BOM, then <meta charset>, else UTF-8."""
    _, text = html_to_unicode(None, path.read_bytes())
    return text


def parse_file(path: Path, url: str | None, notes: list[str] | None = None) -> dict:
    html = read_page(path)
    if not html.strip():
        raise NoProductError("empty file")
    return parse_product(html, url or canonical_url(html) or path.resolve().as_uri(), notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fic parse-page", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="saved product page (HTML)")
    parser.add_argument("--url", help="the page's URL (default: its <link rel=canonical> or og:url, else the file URI)")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        notes: list[str] = []
        try:
            product = parse_file(path, args.url, notes)
        except OSError as error:
            print(f"fic parse-page: cannot read {path}: {error.strerror or error}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        except NoProductError as error:
            print(f"fic parse-page: {path}: no product on this page: {error.reason}", file=sys.stderr)
            status = status or EXIT_NO_PRODUCT
            continue
        print(json.dumps(product, ensure_ascii=False), flush=True)
        print(f"fic parse-page: {path}: read by {product['parsed_by']}" + (f"; notes: {', '.join(notes)}" if notes else ""),
              file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
