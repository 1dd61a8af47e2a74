"""A Label Studio error reaches the run as one short line: status, method and path, the first line of the body
(issue 12, case 6). Before, a server error put its whole HTML page (46 KB) into the run's error, twice (the
message and the chained ApiError).

Against the session's real Label Studio (`label_studio` fixture) and, for the HTML 500 a crashing server or its
proxy sends, a tiny real HTTP server started by this module.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from fic_assets.defs.labelling.assets import label_studio_project
from fic_assets.defs.labelling.sensors import annotation_sensor
from fic_assets.defs.labelling.client import LabelStudioError, LabelStudioResource, body_summary, instructions, labeling_config
from fic_assets.platform.warehouse import DuckDBResource

SHORT = 400  # characters: an error line a person reads in the Dagster UI


def html_error_page(size: int = 46 * 1024) -> bytes:
    """A server error page the size of the one in the issue: a title, then a long traceback."""
    head = b"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>Server Error (500) &ndash; Label Studio</title>\n"
    head += b"<style>" + b"body { font-family: sans-serif; } " * 40 + b"</style>\n</head>\n<body>\n<h1>Server Error (500)</h1>\n<pre>\n"
    line = b'  File "/label-studio/label_studio/data_manager/functions.py", line 123, in get_all_columns\n'
    body = head + line * ((size - len(head)) // len(line) + 1)
    return body[:size - len(b"</pre></body></html>\n")] + b"</pre></body></html>\n"


class Html500(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        page = html_error_page()
        self.send_response(500)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def html_500_url() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering every request with HTTP 500 and a 46 KB HTML page."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Html500)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def assert_one_short_line(message: str) -> None:
    assert len(message) < SHORT, message
    assert "\n" not in message
    assert "<html" not in message.lower() and "<!doctype" not in message.lower() and "File \"/label-studio" not in message


def run_failure(asset, resources) -> str:
    """Materialize for real; the whole error the run stores (message, stack, causes) as Dagster shows it."""
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    return result.failure_data_for_node(asset.node_def.name).error.to_string()


def test_a_request_label_studio_fails_with_http_500_is_one_short_line(label_studio):
    """Bad input: a Data Manager filter whose date Label Studio cannot parse ("+00:00" instead of "Z"), so the
    real server answers HTTP 500."""
    resource = LabelStudioResource(url=label_studio.url, token=label_studio.token, project_title=f"fic errors {uuid.uuid4().hex[:8]}")
    with resource.session() as ls:
        project_id = ls.ensure_project(labeling_config(), instructions()).id
    query = {"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": "2026-01-01T00:00:00+00:00"}]}}
    with pytest.raises(LabelStudioError) as raised:
        with resource.session() as ls:
            pager = ls.ls.tasks.list(project=project_id, fields="task_only", page_size=1, query=json.dumps(query))
            next(iter(pager.iter_pages()))
    message = str(raised.value)
    assert message.startswith(f"Label Studio at {label_studio.url} answered HTTP 500 to GET /api/tasks/?…: ")
    assert "does not match format" in message  # Label Studio's own detail, trimmed
    assert_one_short_line(message)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # the SDK error and its body are dropped


def test_a_url_with_a_path_label_studio_does_not_serve_gets_its_html_page_as_one_short_line(label_studio, tmp_path):
    """Bad input: FIC_LABEL_STUDIO_URL with a path (http://host:port/label-studio): the real Label Studio answers
    HTTP 404 with its whole single-page app (~170 KB of HTML)."""
    wrong = LabelStudioResource(url=f"{label_studio.url}/label-studio", token=label_studio.token, project_title="x")
    error = run_failure(label_studio_project, {"label_studio": wrong, "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb"))})
    line = next(line for line in error.splitlines() if "answered HTTP" in line)
    assert "answered HTTP 404 to GET /label-studio/api/projects/" in line and "KB HTML page, not shown" in line
    assert_one_short_line(line.split("LabelStudioError: ", 1)[-1])
    assert "<!doctype" not in error.lower() and len(error) < 10_000


def test_a_server_answering_500_with_a_46_kb_html_page_is_one_short_line(html_500_url, tmp_path):
    """Bad input: Label Studio crashing behind its proxy: every request answered HTTP 500 with a 46 KB HTML page.
    Both the asset run and the sensor tick (which runs every 30 s) report one short line."""
    resource = LabelStudioResource(url=html_500_url, token="t" * 40, project_title="x", timeout_seconds=10)
    error = run_failure(label_studio_project, {"label_studio": resource, "duckdb": DuckDBResource(path=str(tmp_path / "fic.duckdb"))})
    assert f"Label Studio at {html_500_url} answered HTTP 500 to GET /api/projects/?…: Server Error (500) – Label Studio (46 KB HTML page, not shown)" in error
    assert "<!doctype" not in error.lower() and "get_all_columns" not in error and len(error) < 10_000

    with pytest.raises(LabelStudioError) as raised:
        annotation_sensor(dg.build_sensor_context(resources={"label_studio": resource}))
    assert_one_short_line(str(raised.value))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"id": "e1", "status_code": 500, "detail": "boom " * 100}, "boom boom"),
        ("Bad Gateway\n" + "trace\n" * 5000, "Bad Gateway (…)"),
        ("", "(empty body)"),
        (b"<html><head></head><body>" + b"x" * 50_000 + b"</body></html>", "an HTML page (49 KB HTML page, not shown)"),
    ],
    ids=["json-detail-long", "plain-text-many-lines", "empty", "html-without-title"],
)
def test_error_bodies_of_every_shape_become_one_short_line(body, expected):
    """Bad input: the bodies a server or a proxy sends with an error (JSON, plain text, nothing, HTML)."""
    summary = body_summary(body)
    assert expected in summary
    assert_one_short_line(summary)
