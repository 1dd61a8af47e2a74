"""Fetch many image URLs in parallel through the content cache, with retries that stop where retrying is useless.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff; 404 and 410 mean the image is
gone and are final at once. Every failure ends as a short error string a person can read in a rejects table.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from fic_assets.imageset.cache import ImageCache

FINAL_STATUSES = frozenset({404, 410})
USER_AGENT = "fic-images/0.1 (fashion image research; image set builder)"
MAX_BACKOFF = 10.0


@dataclass(frozen=True)
class FetchResult:
    data: bytes | None
    error: str | None
    from_cache: bool

    @property
    def ok(self) -> bool:
        return self.data is not None


class _RetryableError(Exception):
    """A failure worth another try; its message is the error string if the tries run out."""

    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait  # a server's Retry-After, when it gave one


def make_session(workers: int) -> requests.Session:
    session = requests.Session()
    # One pooled connection per worker thread, so parallel fetches of one host reuse connections.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(workers, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def describe_connection_error(error: requests.ConnectionError) -> str:
    text = str(error)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text:
        return "host name not found"
    return f"connection failed: {text[:200]}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _get_once(session: requests.Session, url: str, timeout: float) -> bytes:
    """One GET; raises _RetryableError or returns the body; a final HTTP status raises ValueError."""
    try:
        response = session.get(url, timeout=timeout)
    except requests.Timeout as error:
        raise _RetryableError(f"timed out after {timeout:g} s") from error
    except requests.ConnectionError as error:
        raise _RetryableError(describe_connection_error(error)) from error
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
        # A body cut short of its Content-Length (the connection broke mid-transfer) or garbled in transit.
        raise _RetryableError(f"connection broken mid-transfer: {str(error)[:200]}") from error
    except requests.RequestException as error:  # an invalid URL, too many redirects...: asking again won't help
        raise ValueError(f"request failed: {type(error).__name__}: {str(error)[:200]}") from error
    status = response.status_code
    if status == 429 or status >= 500:
        raise _RetryableError(f"HTTP {status}", _retry_after(response))
    if status >= 400:
        raise ValueError(f"HTTP {status}")
    return response.content


def fetch_one(session: requests.Session, url: str, retries: int, timeout: float, backoff: float) -> FetchResult:
    for attempt in range(retries + 1):
        try:
            return FetchResult(_get_once(session, url, timeout), None, from_cache=False)
        except ValueError as error:  # 404, 410 and other 4xx: asking again gives the same answer
            return FetchResult(None, str(error), from_cache=False)
        except _RetryableError as error:
            if attempt == retries:
                return FetchResult(None, str(error), from_cache=False)
            time.sleep(min(error.wait if error.wait is not None else backoff * 2**attempt, MAX_BACKOFF))
    raise AssertionError("unreachable")


def fetch_many(
    urls: Iterable[str],
    cache: ImageCache,
    workers: int = 8,
    retries: int = 3,
    timeout: float = 20,
    backoff: float = 0.5,
    session: requests.Session | None = None,
) -> dict[str, FetchResult]:
    """Every distinct URL -> its bytes (from the cache when it holds them intact) or the error that stopped it.

    Fetched bytes go into the cache whatever they are (an HTML page, a cut-off JPEG): judging them is
    decode_rgb's job, and caching the answer keeps a rebuild from asking the shop again.
    """
    results: dict[str, FetchResult] = {}
    missing: list[str] = []
    for url in dict.fromkeys(urls):
        data = cache.get(url)
        if data is None:
            missing.append(url)
        else:
            results[url] = FetchResult(data, None, from_cache=True)
    if not missing:
        return results
    own_session = session is None
    session = session or make_session(workers)

    def fetch(url: str) -> FetchResult:
        result = fetch_one(session, url, retries, timeout, backoff)
        if result.data is not None:
            cache.put(url, result.data)
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="fic-fetch") as pool:
            results.update(zip(missing, pool.map(fetch, missing)))
    finally:
        if own_session:
            session.close()
    return results
