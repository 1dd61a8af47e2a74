"""Fetch image URLs through the content cache, bounded in time and size, politely, and stoppable at any moment.

Every attempt has a total deadline (connect + headers + body), not only a per-read timeout: a host that sends a
byte every few seconds never trips a per-read timeout, so a watchdog thread shuts the socket of an attempt
whose deadline passed (or whose caller cancelled) and the blocked read returns at once. The body is read one
socket read at a time and counted against a byte cap, whatever the Content-Length says (a Content-Length over
the cap is refused before reading). Redirects are followed by hand, at most `max_redirects`, and a loop is
named as such. Each host gets at most `host_concurrency` requests in flight and `host_delay` seconds between
request starts; the loopback demo host is exempt (it is our own process), unless the policy says otherwise.

Connection errors, per-read timeouts, a body cut short, 5xx and 429 (its Retry-After honoured) are retried with
exponential backoff; 404 and 410 mean the image is gone and are final at once, as are an oversized body, a
redirect loop and a spent deadline (a host that needed the whole deadline for one try would need it again, and
the next run tries failed images anyway). Every failure ends as a short error string a person can read in a
rejects or predictions table.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from fic_crawler.config import is_loopback  # one definition of "a loopback host" for the crawler and downloads

from fic_assets.defs.dataset.cache import ImageCache
from fic_assets.platform import settings

FINAL_STATUSES = frozenset({404, 410})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "fic-images/0.1 (fashion image research; image set builder)"
MAX_BACKOFF = 10.0
CHUNK_BYTES = 64 * 1024
# How often waiting threads (a host slot, a backoff) and the watchdog look at cancel events: the upper bound
# on how long a cancelled download goes on.
POLL_SECONDS = 0.2
CANCELLED = "cancelled"

# Retries show in the run's log in the Dagster UI (the instance's python_logs manage the `fic_assets` loggers).
log = logging.getLogger(__name__)


def _setting(name: str, kind: type):
    return lambda: kind(settings.get(name))


@dataclass(frozen=True)
class DownloadPolicy:
    """How one image download may behave. Settings-backed fields read the environment when a policy is made."""

    retries: int = 3
    timeout: float = 10.0  # per connect and per socket read: no byte for this long is a stall worth a retry
    backoff: float = 0.5  # first retry wait; doubles per try, at most MAX_BACKOFF
    deadline: float = field(default_factory=_setting("FIC_IMAGE_DEADLINE_SECONDS", float))  # per attempt, all of it
    max_bytes: int = field(default_factory=_setting("FIC_IMAGE_MAX_BYTES", int))
    max_redirects: int = 5
    host_concurrency: int = field(default_factory=_setting("FIC_IMAGE_HOST_CONCURRENCY", int))
    host_delay: float = field(default_factory=_setting("FIC_IMAGE_HOST_DELAY_SECONDS", float))
    polite_to_loopback: bool = False  # True: pace 127.0.0.1 / localhost / ::1 like a real host (tests of the pacing)

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.timeout <= 0 or self.max_bytes <= 0 or self.host_concurrency < 1 or self.host_delay < 0:
            raise ValueError(f"invalid download policy: {self}")


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


class _FinalError(Exception):
    """A failure asking again will not change (404, too large, a redirect loop, a spent deadline)."""


class _Cancelled(Exception):
    pass


# --- the watchdog: deadlines and cancellation that also reach a thread blocked in a socket read -----------------


class _Attempt:
    """One attempt in flight (all its redirect hops): its deadline, its caller's cancel event, its connection."""

    __slots__ = ("deadline", "cancel", "connection", "expired", "cancelled")

    def __init__(self, deadline: float, cancel: threading.Event | None):
        self.deadline = deadline
        self.cancel = cancel
        self.connection: HTTPConnection | None = None
        self.expired = False
        self.cancelled = False


class _Watchdog:
    """One daemon thread for the process; it shuts the socket of an attempt past its deadline or cancelled.

    Shutting a socket down wakes a recv() blocked in another thread, which then sees end-of-stream. A connection
    belongs to the attempt that sent the last request on it (`owner`), so a connection already back in the pool
    and reused by another attempt is never cut for the first one's deadline.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._attempts: set[_Attempt] = set()
        self._owner: dict[int, _Attempt] = {}  # id(connection) -> attempt that owns it now
        self._thread: threading.Thread | None = None
        self.local = threading.local()  # .attempt: the calling thread's attempt, for the connection hook

    def watch(self, attempt: _Attempt) -> None:
        with self._lock:
            self._attempts.add(attempt)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fic-download-watchdog", daemon=True)
                self._thread.start()
            self._lock.notify()
        self.local.attempt = attempt

    def finish(self, attempt: _Attempt) -> None:
        self.local.attempt = None
        with self._lock:
            self._attempts.discard(attempt)
            if attempt.connection is not None and self._owner.get(id(attempt.connection)) is attempt:
                del self._owner[id(attempt.connection)]

    def bind(self, connection: HTTPConnection) -> None:
        """Called by the connection right before it sends a request for the calling thread's attempt."""
        attempt = getattr(self.local, "attempt", None)
        if attempt is None:
            return
        with self._lock:
            if attempt.expired or attempt.cancelled:  # stopped while it connected or waited for a redirect's host
                raise ConnectionAbortedError("download stopped before its request was sent")
            if attempt.connection is not None and self._owner.get(id(attempt.connection)) is attempt:
                del self._owner[id(attempt.connection)]
            attempt.connection = connection
            self._owner[id(connection)] = attempt

    def _cut(self, attempt: _Attempt) -> None:
        connection = attempt.connection
        if connection is None or self._owner.get(id(connection)) is not attempt:
            return
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by its owner
                pass

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for attempt in list(self._attempts):
                    if attempt.cancel is not None and attempt.cancel.is_set():
                        attempt.cancelled = True
                    elif now >= attempt.deadline:
                        attempt.expired = True
                    else:
                        continue
                    self._cut(attempt)
                    self._attempts.discard(attempt)
                soonest = min((attempt.deadline for attempt in self._attempts), default=now + 3600)
                self._lock.wait(max(0.01, min(soonest - now, POLL_SECONDS)))


_WATCHDOG = _Watchdog()


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args, **kwargs):  # type: ignore[override]
        _WATCHDOG.bind(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args, **kwargs):  # type: ignore[override]
        _WATCHDOG.bind(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections tell the watchdog which attempt they serve."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# --- politeness: per-host slots and pacing ---------------------------------------------------------------------


class _HostGate:
    """At most `concurrency` requests in flight to one host, request starts at least `delay` seconds apart."""

    def __init__(self, concurrency: int, delay: float):
        self.slots = threading.BoundedSemaphore(concurrency)
        self.delay = delay
        self.lock = threading.Lock()
        self.next_start = 0.0

    def enter(self, cancel: threading.Event | None) -> None:
        while not self.slots.acquire(timeout=POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                raise _Cancelled
        try:
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next_start)
                self.next_start = start + self.delay
            _sleep(start - now, cancel)
        except BaseException:
            self.slots.release()
            raise

    def leave(self) -> None:
        self.slots.release()


_GATES: dict[tuple[str, int, float], _HostGate] = {}
_GATES_LOCK = threading.Lock()


def _gate_for(url: str, policy: DownloadPolicy) -> _HostGate | None:
    """The process-wide gate of the URL's host under this policy's limits; None for the loopback demo host."""
    if is_loopback(url) and not policy.polite_to_loopback:
        return None
    key = ((urlsplit(url).hostname or "").lower(), policy.host_concurrency, policy.host_delay)
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = _HostGate(policy.host_concurrency, policy.host_delay)
        return gate


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    if seconds <= 0:
        return
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise _Cancelled


# --- one download ----------------------------------------------------------------------------------------------


def make_session(workers: int) -> requests.Session:
    session = requests.Session()
    # One pooled connection per worker thread, so parallel fetches of one host reuse connections.
    adapter = _WatchedAdapter(pool_connections=4, pool_maxsize=max(workers, 1))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def describe_connection_error(error: Exception) -> str:
    text = str(error)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolutionError" in text:
        return "host name not found"
    return f"connection failed: {text[:200]}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


def _read_body(response: requests.Response, policy: DownloadPolicy, progress: list[int], attempt: _Attempt) -> bytes:
    """The body, one socket read at a time (a read of N bytes would wait for all N from a trickling host)."""
    declared = _content_length(response)
    if declared is not None and declared > policy.max_bytes:
        raise _FinalError(f"too large: Content-Length {declared} bytes is over the {policy.max_bytes} byte cap")
    body = bytearray()
    while chunk := response.raw.read1(CHUNK_BYTES, decode_content=True):
        body += chunk
        progress[0] = len(body)
        if attempt.expired or attempt.cancelled:  # a session without the watched adapter: nobody cut the socket
            raise OSError("download stopped by the watchdog")
        if len(body) > policy.max_bytes:
            said = "no Content-Length" if declared is None else f"Content-Length {declared}"
            raise _FinalError(f"too large: more than the {policy.max_bytes} byte cap arrived ({said})")
    return bytes(body)


def _get_once(session: requests.Session, url: str, policy: DownloadPolicy, cancel: threading.Event | None) -> bytes:
    """One attempt: GET, redirects followed by hand, the body read; raises _RetryableError, _FinalError, _Cancelled."""
    read_timeout = min(policy.timeout, policy.deadline)
    attempt: _Attempt | None = None
    progress = [0]  # body bytes received so far, for the deadline's message
    answered = False  # response headers arrived
    declared: int | None = None
    seen = [url]
    try:
        while True:
            gate = _gate_for(url, policy)
            if gate is not None:
                gate.enter(cancel)
            try:
                if attempt is None:  # the deadline starts once the first request may go, not while waiting its turn
                    attempt = _Attempt(time.monotonic() + policy.deadline, cancel)
                    _WATCHDOG.watch(attempt)
                response = session.get(url, timeout=read_timeout, stream=True, allow_redirects=False)
                try:
                    status = response.status_code
                    answered, declared = True, _content_length(response)
                    if status in REDIRECT_STATUSES and response.headers.get("Location"):
                        target = urljoin(url, response.headers["Location"])
                    elif status == 429 or status >= 500:
                        raise _RetryableError(f"HTTP {status}", _retry_after(response))
                    elif status >= 400:
                        raise _FinalError(f"HTTP {status}")
                    else:
                        data = _read_body(response, policy, progress, attempt)
                        if attempt.cancelled or attempt.expired:
                            # A body without Content-Length or chunking ends at EOF, so a cut one looks complete.
                            raise OSError("connection shut by the watchdog")
                        return data
                finally:
                    response.close()
            finally:
                if gate is not None:
                    gate.leave()
            if target in seen:
                raise _FinalError(f"redirect loop: back at {target} after {len(seen) - seen.index(target)} redirect(s)")
            if len(seen) > policy.max_redirects:
                raise _FinalError(f"too many redirects: more than {policy.max_redirects}")
            seen.append(target)
            url = target
    except (_FinalError, _RetryableError, _Cancelled):
        if attempt is not None and attempt.cancelled:
            raise _Cancelled from None
        raise
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
        if attempt is not None and attempt.cancelled:
            raise _Cancelled from error
        # Past the deadline, whoever noticed first: the watchdog's cut, or the socket's own read timeout (it is
        # min(timeout, deadline), so under load it can fire before the watchdog thread runs). Either way final.
        if attempt is not None and (attempt.expired or time.monotonic() >= attempt.deadline):
            got = f"{progress[0]} of {'?' if declared is None else declared} bytes received" if answered else "no response"
            raise _FinalError(f"timed out after {policy.deadline:g} s (deadline): {got}") from error
        raise _classify(error, read_timeout) from error
    finally:
        if attempt is not None:
            _WATCHDOG.finish(attempt)


def _classify(error: Exception, read_timeout: float) -> Exception:
    """A transport error as _RetryableError (worth another try) or _FinalError (an invalid URL and the like)."""
    if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
        return _RetryableError(f"timed out after {read_timeout:g} s")
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError,
                          urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError)):
        # A body cut short of its Content-Length (the connection broke mid-transfer) or garbled in transit.
        return _RetryableError(f"connection broken mid-transfer: {str(error)[:200]}")
    if isinstance(error, (requests.ConnectionError, OSError)):
        return _RetryableError(describe_connection_error(error))
    # An invalid URL, a missing scheme...: asking again won't help.
    return _FinalError(f"request failed: {type(error).__name__}: {str(error)[:200]}")


def fetch_one(session: requests.Session, url: str, policy: DownloadPolicy | None = None,
              cancel: threading.Event | None = None) -> FetchResult:
    """The URL's bytes or the error that stopped it; "cancelled" once `cancel` is set (within about POLL_SECONDS)."""
    policy = policy or DownloadPolicy()
    for attempt in range(policy.retries + 1):
        try:
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            return FetchResult(_get_once(session, url, policy, cancel), None, from_cache=False)
        except _Cancelled:
            return FetchResult(None, CANCELLED, from_cache=False)
        except _FinalError as error:
            return FetchResult(None, str(error), from_cache=False)
        except _RetryableError as error:
            if attempt == policy.retries:
                return FetchResult(None, str(error), from_cache=False)
            wait = min(error.wait if error.wait is not None else policy.backoff * 2**attempt, MAX_BACKOFF)
            log.info("image download retry %s of %s in %.1f s: %s: %s", attempt + 1, policy.retries, wait, url, error)
            try:
                _sleep(wait, cancel)
            except _Cancelled:
                return FetchResult(None, CANCELLED, from_cache=False)
    raise AssertionError("unreachable")


def fetch_many(
    urls: Iterable[str],
    cache: ImageCache,
    workers: int = 8,
    policy: DownloadPolicy | None = None,
    session: requests.Session | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, FetchResult]:
    """Every distinct URL -> its bytes (from the cache when it holds them intact) or the error that stopped it.

    Fetched bytes go into the cache whatever they are (an HTML page, a cut-off JPEG): judging them is
    decode_rgb's job, and caching the answer keeps a rebuild from asking the shop again. If the caller is
    interrupted (SIGTERM, Ctrl-C), the downloads in flight are cancelled instead of waited for.
    """
    policy = policy or DownloadPolicy()
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
    if cancel is None:
        cancel = threading.Event()

    def fetch(url: str) -> FetchResult:
        result = fetch_one(session, url, policy, cancel)
        if result.data is not None:
            cache.put(url, result.data)
        return result

    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="fic-fetch")
    try:
        results.update(zip(missing, pool.map(fetch, missing)))
    except BaseException:
        cancel.set()  # interrupted (SIGTERM, Ctrl-C): stop the downloads in flight instead of waiting for them
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if own_session:
            session.close()
    return results
