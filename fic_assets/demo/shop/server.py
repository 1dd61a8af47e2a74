"""`fic demo-shop`: serve the generated demo shop on 127.0.0.1 (stdlib HTTP server, one thread a request).

    fic demo-shop                    serve in the foreground until Ctrl-C
    fic demo-shop --background       start a detached server (idempotent), print its URL
    fic demo-shop --stop             stop the background server of that port
    fic demo-shop --write-truth F    write the kept truth CSV for that host and port, then exit
    fic demo-shop --photos DIR       any of these with real photos (DIR/worn/, DIR/not_worn/) instead of drawings
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fic_assets.platform import processes, settings
from fic_assets.platform.net import port_is_free
from fic_assets.demo.shop.catalogue import Catalogue, catalogue_for, write_truth_csv
from fic_assets.demo.shop.pages import SHOP_ID, Response, Shop
from fic_assets.demo.shop.photos import PhotosError, PhotoSet, load_photos

START_TIMEOUT = 15.0
ALLOWED_HOST_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


class DemoShopServer(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive clients (Scrapy, browsers) may hold a connection open; closing must not wait for them.
    block_on_close = False

    def __init__(self, address: tuple[str, int], shop: Shop, verbose: bool = False) -> None:
        super().__init__(address, DemoShopHandler)
        self.shop = shop
        self.verbose = verbose

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class DemoShopHandler(BaseHTTPRequestHandler):
    server: DemoShopServer
    protocol_version = "HTTP/1.1"
    server_version = "fic-demo-shop"
    timeout = 30  # idle keep-alive connections give their thread back

    def base_url(self) -> str:
        """The shop base URL as the client sees it, so page links and image URLs resolve for that client."""
        host = self.headers.get("Host", "")
        if host and set(host) <= ALLOWED_HOST_CHARACTERS:
            return f"http://{host}"
        return self.server.base_url

    def response(self) -> Response:
        url = urlsplit(self.path)
        try:
            return self.server.shop.respond(url.path, parse_qs(url.query), self.base_url())
        except Exception as error:  # a bug in the shop: answer 500 and say it, whatever --verbose says
            sys.stderr.write(f"[demo-shop] {self.path}: {error!r}\n")
            return Response(500, "text/plain; charset=utf-8", b"internal error in the demo shop\n")

    def send(self, include_body: bool) -> None:
        response = self.response()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        if include_body:
            self.wfile.write(response.body)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send(include_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self.send(include_body=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(host: str = settings.DEMO_SHOP_HOST, port: int = settings.DEMO_SHOP_PORT, seed: int = 42,
                verbose: bool = False, photos: PhotoSet | None = None) -> DemoShopServer:
    """A bound, not yet serving demo shop; port 0 picks a free port (see server.server_address)."""
    return DemoShopServer((host, port), Shop(catalogue_for(seed, photos)), verbose=verbose)


@contextmanager
def running_demo_shop(seed: int = 42, port: int = 0, host: str = settings.DEMO_SHOP_HOST,
                      photos: PhotoSet | None = None, catalogue: Catalogue | None = None) -> Iterator[str]:
    """Serve the demo shop (or the given catalogue) in a background thread; yields its base URL ("http://127.0.0.1:PORT")."""
    server = DemoShopServer((host, port), Shop(catalogue)) if catalogue is not None else make_server(host, port, seed, photos=photos)
    thread = threading.Thread(target=server.serve_forever, name="demo-shop", daemon=True)
    thread.start()
    try:
        yield server.base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the command ----------------------------------------------------------------------------------------

def probe(url: str) -> dict | None | str:
    """What answers at url: the demo shop's health (a dict), None when nothing listens, "other" otherwise."""
    try:
        with urllib.request.urlopen(f"{url}/_demo/health", timeout=2) as answer:
            health = json.loads(answer.read())
            return health if isinstance(health, dict) and health.get("shop") == SHOP_ID else "other"
    except urllib.error.HTTPError:
        return "other"
    except urllib.error.URLError as error:
        return None if isinstance(error.reason, ConnectionRefusedError) else "other"
    except (OSError, ValueError):  # not HTTP, or not our JSON
        return "other"


def page_problem(url: str) -> str | None:
    """Why the demo shop at url does not serve its pages, or None when its brand index and first listing answer.

    Its health alone can mislead: a leftover shop whose checkout was deleted still answers /_demo/health from
    memory, but every page it renders from its (gone) templates is a 500, and a crawl of it finds nothing.
    """
    def get(page: str) -> tuple[int | str, str]:
        try:
            with urllib.request.urlopen(page, timeout=5) as answer:
                return answer.status, answer.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""
        except (OSError, ValueError) as error:
            return f"no answer ({error})", ""

    index = f"{url}/brands/"
    status, body = get(index)
    if status != 200:
        return f"GET {index} answered {status}"
    brands = re.findall(r'href="(/[^"/?#]+/)"', body)
    if not brands:
        return f"GET {index} lists no brand"
    status, _ = get(url + brands[0])
    return None if status == 200 else f"GET {url}{brands[0]} answered {status}"


def broken_shop_error(url: str, problem: str) -> str:
    """The error for a demo shop that answers its health but not its pages: which process, and how to stop it."""
    port = urlsplit(url).port or 80
    record = processes.recorded(pid_file(port))
    pid = record.pid if record is not None else processes.listening_pid(port)
    who = f"pid {pid}" if pid else "pid unknown"
    if record is not None:
        how = f"`fic demo --stop` (or `fic demo-shop --stop --port {port}`)"
    else:
        where = f"`kill {pid}`" if pid else f"stop the process listening on port {port} (`ss -ltnp 'sport = :{port}'` names it)"
        how = (f"{where}; `fic demo --stop` does not know it: no record of it in {processes.data_dir()} (started from "
               "another checkout or FIC_DATA_DIR)")
    return (f"the demo shop on {url} ({who}, port {port}) answers its health check but not its pages: {problem}. "
            f"It is a leftover (a checkout deleted under it?) and cannot be crawled; stop it with {how}, then run again")


def pid_file(port: int) -> Path:
    return processes.data_dir() / f"demo-shop-{port}.pid"


def background_pid_files() -> list[Path]:
    """The pid files of the background demo shops recorded in FIC_DATA_DIR, one a port."""
    return sorted(processes.data_dir().glob("demo-shop-*.pid"))


def serves(health: dict, seed: int, photos: PhotoSet | None) -> bool:
    """Whether a running demo shop (its /_demo/health) serves this seed's catalogue with these images."""
    theirs = (health.get("photos") or {}).get("fingerprint")
    return health.get("seed") == seed and theirs == (photos.fingerprint if photos else None)


def describe(seed: object, photos: dict | PhotoSet | None) -> str:
    if isinstance(photos, PhotoSet):
        photos = photos.describe()
    what = f"the photos in {photos.get('dir')} (fingerprint {photos.get('fingerprint')})" if photos else "drawn images"
    return f"seed {seed} and {what}"


def start_background(host: str, port: int, seed: int, photos: PhotoSet | None = None) -> int:
    """Start a detached `fic demo-shop` on host:port unless our shop already answers there."""
    url = f"http://{host}:{port}"
    found = probe(url)
    if isinstance(found, dict) and serves(found, seed, photos):
        problem = page_problem(url)
        if problem is not None:
            print(f"error: {broken_shop_error(url, problem)}", file=sys.stderr)
            return 1
        print(url)
        return 0
    if isinstance(found, dict):
        print(f"error: a demo shop with {describe(found.get('seed'), found.get('photos'))} already runs on {url}, "
              f"not {describe(seed, photos)}; stop it first (fic demo-shop --stop --port {port})", file=sys.stderr)
        return 1
    if found == "other" or not port_is_free(host, port):
        print(f"error: port {port} on {host} is busy with something that is not the demo shop; "
              "choose another with --port", file=sys.stderr)
        return 1
    log_path = processes.data_dir() / f"demo-shop-{port}.log"
    command = [sys.executable, "-m", "fic_assets.cli", "demo-shop", "--host", host, "--port", str(port), "--seed", str(seed)]
    if photos is not None:
        command += ["--photos", str(photos.root)]
    try:
        processes.start(command, pid_file(port), log_path, lambda: isinstance(probe(url), dict),
                        what=f"the demo shop on {url}", timeout=START_TIMEOUT, url=url)
    except processes.StartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(url)
    return 0


def stop_background(port: int) -> int:
    stopped = processes.stop(pid_file(port))
    if stopped is None:
        print(f"no background demo shop running for port {port} (none recorded in {pid_file(port)})")
        return 0
    print(f"stopped the demo shop on port {port}")
    return 0


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_foreground(host: str, port: int, seed: int, verbose: bool, photos: PhotoSet | None = None) -> int:
    server = make_server(host, port, seed, verbose=verbose, photos=photos)
    # SIGTERM (from --stop) ends the loop like Ctrl-C, so the socket is closed cleanly.
    signal.signal(signal.SIGTERM, interrupt)
    images = (f"{len(photos.worn)} worn and {len(photos.not_worn)} not_worn photos from {photos.root}" if photos
              else "drawn images")
    print(f"demo shop (seed {seed}, {images}) serving on {server.base_url} - Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fic demo-shop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=settings.DEMO_SHOP_HOST)
    parser.add_argument("--port", type=int, default=settings.DEMO_SHOP_PORT)
    parser.add_argument("--seed", type=int, default=42, help="catalogue seed (default 42)")
    parser.add_argument("--photos", metavar="DIR", help="serve real photos from DIR/worn/ and DIR/not_worn/ instead of "
                        "drawn images (the folder is the kept truth; unreadable files are skipped with a warning)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--background", action="store_true", help="start detached; no-op when already running")
    action.add_argument("--stop", action="store_true", help="stop the background shop on --port")
    action.add_argument("--write-truth", metavar="PATH", help="write the truth CSV for --host/--port and exit")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def photos_or_exit(folder: str | None) -> PhotoSet | None:
    """The checked photo set of --photos, or SystemExit(2) with the reason it cannot be used."""
    if folder is None:
        return None
    try:
        return load_photos(folder)
    except PhotosError as error:
        print(f"error: --photos: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stop:
        return stop_background(args.port)
    photos = photos_or_exit(args.photos)
    if args.write_truth:
        rows = write_truth_csv(args.write_truth, f"http://{args.host}:{args.port}", args.seed, photos)
        print(f"wrote {rows} image rows to {args.write_truth}")
        return 0
    if args.background:
        if args.port == 0:
            print("error: --background needs a fixed --port", file=sys.stderr)
            return 2
        return start_background(args.host, args.port, args.seed, photos)
    return serve_foreground(args.host, args.port, args.seed, args.verbose, photos)


if __name__ == "__main__":
    sys.exit(main())
