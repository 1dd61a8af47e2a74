"""The crawler resource: runs the Scrapy project in `crawler/` in a subprocess and reads back its feed and stats.

Given the asset's context, the subprocess is a Dagster Pipes process: the crawler's PipesProgress extension
(fic_crawler.extensions) streams its progress into the run's log while it crawls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

import fic_crawler

CRAWLER_PROJECT_DIR = Path(fic_crawler.__file__).resolve().parent.parent  # holds scrapy.cfg


class CrawlError(RuntimeError):
    """A Scrapy subprocess failed; the message carries the tail of its log."""


@dataclass
class CrawlResult:
    items: list[dict]
    stats: dict
    feed_path: Path
    log_path: Path
    bad_feed_lines: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return int(self.stats.get("response_received_count", 0))


def read_feed(path: Path) -> tuple[list[dict], int]:
    """Read a Scrapy JSON-lines feed. A crawl killed mid-write leaves a cut last line: skip and count it."""
    items, bad = [], 0
    if not path.exists():
        return items, bad
    with path.open(encoding="utf-8") as feed:
        for line in feed:
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return items, bad


@contextmanager
def pipes_env(context: dg.AssetExecutionContext | None) -> Iterator[dict[str, str]]:
    """The environment that makes the crawl a Pipes process of this asset's run (none without a context).

    Dagster's own open_pipes_session rather than PipesSubprocessClient: the crawl keeps its time-out, its captured
    stderr and its error naming the exit status and the log, which the client's "failed with code N" would lose.
    """
    if context is None:
        yield {}
        return
    with ExitStack() as stack:
        with warnings.catch_warnings():
            # Dagster 1.13's own Pipes code calls its deprecated context.run_id and a preview API on opening: nothing
            # to change here, and the CLI runs a user follows must not print a DeprecationWarning.
            warnings.filterwarnings("ignore", message=r"AssetExecutionContext\.run_id is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=dg.PreviewWarning)
            session = stack.enter_context(dg.open_pipes_session(
                context=context, context_injector=dg.PipesTempFileContextInjector(), message_reader=dg.PipesTempFileMessageReader()))
        yield session.get_bootstrap_env_vars()


def dropped_by_reason(stats: dict) -> dict[str, int]:
    prefix = "fic/dropped/"
    return {key[len(prefix):]: int(value) for key, value in stats.items() if key.startswith(prefix)}


class CrawlerResource(dg.ConfigurableResource):
    """Runs the Scrapy project in `crawler/` in a subprocess.

    A subprocess because Twisted's reactor cannot be restarted inside one Python process, and a Dagster
    run process may crawl more than once.
    """

    shop_url: str
    brand_index_path: str = "/brands/"
    max_pages: int = 0
    render: str = "none"
    splash_url: str = "http://127.0.0.1:8050"
    http_cache: str = "false"
    timeout_seconds: float = 3600.0

    def _env(self, stats_path: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FIC_SHOP_URL": self.shop_url,
                "FIC_BRAND_INDEX_PATH": self.brand_index_path,
                "FIC_MAX_PAGES": str(self.max_pages),
                "FIC_RENDER": self.render,
                "FIC_SPLASH_URL": self.splash_url,
                "FIC_HTTP_CACHE": self.http_cache,
                "FIC_STATS_FILE": str(stats_path),
                "SCRAPY_SETTINGS_MODULE": "fic_crawler.settings",
            }
        )
        return env

    def run_spider(self, spider: str, work_dir: Path, spider_args: dict[str, str] | None = None,
                   context: dg.AssetExecutionContext | None = None) -> CrawlResult:
        work_dir.mkdir(parents=True, exist_ok=True)
        feed_path = work_dir / f"{spider}.jsonl"
        stats_path = work_dir / f"{spider}.stats.json"
        log_path = work_dir / f"{spider}.log"
        for stale in (feed_path, stats_path):
            stale.unlink(missing_ok=True)
        command = [sys.executable, "-m", "scrapy", "crawl", spider, "-O", f"{feed_path}:jsonlines", "-s", f"LOG_FILE={log_path}"]
        for name, value in (spider_args or {}).items():
            command += ["-a", f"{name}={value}"]
        with pipes_env(context) as pipes:
            completed = subprocess.run(
                command, cwd=CRAWLER_PROJECT_DIR, env={**self._env(stats_path), **pipes}, capture_output=True, text=True,
                timeout=self.timeout_seconds,
            )
        if completed.returncode != 0 or not stats_path.exists():
            raise CrawlError(
                f"scrapy crawl {spider} against {self.shop_url} failed (exit {completed.returncode}); "
                f"log {log_path}:\n{_tail(log_path, completed.stderr)}"
            )
        stats = json.loads(stats_path.read_text(encoding="utf-8"))
        items, bad_lines = read_feed(feed_path)
        if stats.get("finish_reason") not in (None, "finished", "closespider_itemcount", "closespider_pagecount"):
            raise CrawlError(f"scrapy crawl {spider} ended with finish_reason={stats.get('finish_reason')!r}; log {log_path}")
        return CrawlResult(items=items, stats=stats, feed_path=feed_path, log_path=log_path, bad_feed_lines=bad_lines, dropped=dropped_by_reason(stats))

    def discover_brands(self, work_dir: Path, context: dg.AssetExecutionContext | None = None) -> CrawlResult:
        result = self.run_spider("zalando_brands", work_dir, context=context)
        if not result.items:
            raise CrawlError(
                f"no brands found at {self.shop_url.rstrip('/')}{self.brand_index_path} "
                f"(pages fetched: {result.pages}); is the shop up and FIC_BRAND_INDEX_PATH right? log {result.log_path}"
            )
        return result

    def crawl_brands(self, brand_paths: Sequence[str], work_dir: Path, brand_keys: Mapping[str, str] | None = None,
                     context: dg.AssetExecutionContext | None = None) -> CrawlResult:
        """brand_keys: {path: partition key} for the paths whose key is not their plain slug (collisions)."""
        args = {"brands": ",".join(brand_paths), "max_pages": str(self.max_pages)}
        if brand_keys:
            args["brand_keys"] = json.dumps(dict(brand_keys), ensure_ascii=False)
        return self.run_spider("zalando", work_dir, args, context)


def _tail(log_path: Path, stderr: str, lines: int = 30) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return "\n".join((text + "\n" + (stderr or "")).strip().splitlines()[-lines:])
